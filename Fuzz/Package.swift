// swift-tools-version:6.1
// libFuzzer targets for tts-cluster's decoders and readers. A separate package so that the main
// build never sees `-sanitize=fuzzer`. Build and run them with `scripts/fuzz.sh` (see README.md,
// "Fuzzing"):
//
//     swift build -c debug --package-path Fuzz --scratch-path Fuzz/.build \
//         -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//
// Each `Fuzz…` target defines `LLVMFuzzerTestOneInput` and `<Target>_main`, the name SwiftPM links
// as `main`, which starts libFuzzer's driver (see FuzzSupport/FuzzDriver.swift).

import Foundation
import PackageDescription

/// The parent package's identity is the name of its folder (a checkout may be named anything).
let parent = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

/// One fuzz target: an executable whose only entry point is `LLVMFuzzerTestOneInput`.
func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: parent) },
        swiftSettings: strict
    )
}

let package = Package(
    name: "tts-cluster-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(path: "..")],
    targets: [
        // libFuzzer's driver entry point, declared for Swift.
        .target(name: "CLibFuzzer"),
        // The driver, invariant checks, encoders and scratch files shared by the targets.
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"], swiftSettings: strict),
        fuzzTarget("FuzzWireDecoder", ["Shared"]),
        fuzzTarget("FuzzJobSpec", ["Shared", "JobSpecs"]),
        fuzzTarget("FuzzNpy", ["Worker"]),
        fuzzTarget("FuzzPairManifest", ["Worker", "Shared"]),
        fuzzTarget("FuzzEvalManifest", ["Shared"]),
        fuzzTarget("FuzzTensorBoard", ["Worker"]),
        // Writes the seed corpora under Corpus/ (an ordinary program, not a fuzz target).
        .executableTarget(
            name: "FuzzSeeds",
            dependencies: ["FuzzSupport", .product(name: "Shared", package: parent), .product(name: "Worker", package: parent)],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
