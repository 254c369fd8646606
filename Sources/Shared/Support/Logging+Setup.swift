import Logging

/// Process-wide logging: lines to standard error at the chosen level.
public enum LogSetup {
    /// Bootstraps swift-log once; returns a logger labelled `label`.
    public static func bootstrap(label: String, level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { name in
            var h = StreamLogHandler.standardError(label: name)
            h.logLevel = level
            return h
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

