/// The tts-cluster release this build belongs to.
public enum TTSCluster {
    public static let version = "0.1.0"
}
