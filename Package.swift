// swift-tools-version:6.1
// tts-cluster: a coordinator/worker system that runs and evaluates the Korean fine-tuning
// of IndexTTS-2's GPT stage across a few GPU boxes. See README.md and docs/.

import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "tts-cluster",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tts-coordinator", targets: ["TTSCoordinatorCLI"]),
        .executable(name: "tts-worker", targets: ["TTSWorkerCLI"]),
        .executable(name: "tts-bench", targets: ["TTSBench"]),
        .executable(name: "nng-echo", targets: ["NNGEcho"]),
        .library(name: "Shared", targets: ["Shared"]),
        .library(name: "JobSpecs", targets: ["JobSpecs"]),
        .library(name: "Scoring", targets: ["Scoring"]),
        .library(name: "CurlHTTP", targets: ["CurlHTTP"]),
        .library(name: "WandB", targets: ["WandB"]),
        .library(name: "Slack", targets: ["Slack"]),
        .library(name: "ClusterAdmin", targets: ["ClusterAdmin"]),
        .library(name: "Coordinator", targets: ["Coordinator"]),
        .library(name: "Worker", targets: ["Worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System libraries (Debian -dev packages); one folder each.
        .systemLibrary(name: "CNNG", providers: [.apt(["libnng-dev"])]),
        .systemLibrary(name: "CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSndfile", providers: [.apt(["libsndfile1-dev"])]),
        // The torch shim's C header (types only: the library is loaded with dlopen at run time).
        .systemLibrary(name: "CTorchShim", path: "Sources/CTorchShim"),
        // Typed wrappers for libcurl's variadic setopt/getinfo, which Swift cannot call.
        .target(name: "CCurlShim", dependencies: ["CCurl"], linkerSettings: [.linkedLibrary("curl")]),

        // What both processes use: protocol, wire codec, NNG transport, token proofs, the spool
        // record, checksums, the protobuf varint codec, support types and the payloads a worker
        // receives. Everything else is coordinator/CLI-only and lives in the modules below.
        .target(
            name: "Shared",
            dependencies: [
                "CNNG",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Job specs (YAML), GPU presets, sweeps, command templates, the parser and the preview.
        .target(
            name: "JobSpecs",
            dependencies: ["Shared", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        // WER/CER, edit operations, the Korean normalizer, jiwer-compatible output, batch scoring.
        .target(name: "Scoring", swiftSettings: strict),
        // The libcurl HTTP client (W&B, Slack, the CLI's HTTP admin client).
        .target(name: "CurlHTTP", dependencies: ["CCurlShim"], swiftSettings: strict),
        // Weights & Biases: the offline `.wandb` transaction log and the online API.
        .target(
            name: "WandB",
            dependencies: ["Shared", "CurlHTTP", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Slack incoming webhooks: messages, delivery outcomes, rate limiting.
        .target(name: "Slack", dependencies: ["Shared", "CurlHTTP"], swiftSettings: strict),
        // The CLI's admin client (NNG and HTTP) and the admin answer models it shares with the coordinator.
        .target(name: "ClusterAdmin", dependencies: ["Shared", "CurlHTTP"], swiftSettings: strict),
        // Store, scheduler, ingest, liveness and the request router of the coordinator.
        .target(
            name: "Coordinator",
            dependencies: [
                "Shared", "JobSpecs", "Scoring", "WandB", "Slack", "CurlHTTP", "ClusterAdmin",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The coordinator's HTTP surface: REST API, dashboard, Prometheus metrics, health.
        .target(
            name: "CoordinatorHTTP",
            dependencies: [
                "Shared", "Coordinator", "JobSpecs", "CurlHTTP", "WandB", "ClusterAdmin",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Agent loop, GPU probe and shard executors of a worker.
        .target(
            name: "Worker",
            dependencies: [
                "Shared",
                "Scoring",
                "CSndfile",
                "CTorchShim",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Thin executables: argument parsing and wiring only.
        .executableTarget(
            name: "TTSCoordinatorCLI",
            dependencies: [
                "Shared", "Coordinator", "CoordinatorHTTP", "JobSpecs", "WandB", "Slack", "ClusterAdmin",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "TTSWorkerCLI",
            dependencies: [
                "Shared", "Worker",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Benchmarks: a raw NNG echo server in C (the baseline) and the load generator.
        .executableTarget(
            name: "NNGEcho",
            dependencies: ["CNNG"],
            linkerSettings: [.linkedLibrary("nng")]
        ),
        .executableTarget(
            name: "TTSBench",
            dependencies: [
                "Shared", "Worker", "Coordinator", "Scoring", "CurlHTTP", "WandB", "ClusterAdmin",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),

        // Loopback servers and random generators shared by the test targets.
        .target(name: "TestSupport", dependencies: ["Shared", "CurlHTTP"], path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(
            name: "SharedTests",
            dependencies: ["Shared", "JobSpecs", "Scoring", "CurlHTTP", "WandB", "Slack", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CoordinatorTests",
            dependencies: ["Coordinator", "Shared", "JobSpecs", "ClusterAdmin", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "Shared", "Scoring", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "CoordinatorHTTPTests",
            dependencies: ["CoordinatorHTTP", "Coordinator", "Shared", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Shared", "JobSpecs", "CurlHTTP", "WandB", "ClusterAdmin", "TestSupport", "TTSCoordinatorCLI", "TTSWorkerCLI",
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
