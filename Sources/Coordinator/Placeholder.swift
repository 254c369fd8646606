public enum CoordinatorModule {}
