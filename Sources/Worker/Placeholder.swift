public enum WorkerModule {}
