// swift-tools-version:6.0
import Foundation
import PackageDescription

// Kernels are written with SIMD8/SIMD16 vectors. They only become real vector
// instructions when the compiler may use the host's vector extensions; without
// them `addingProduct` lowers to scalar `fmaf` calls (~25x slower). So the
// default build targets the machine it is built on. `QUADRANET_PORTABLE=1`
// gives a build that runs on any x86-64/arm64 CPU (slower, same results up to
// rounding), e.g. for binaries that are copied to other machines.
let portable = ProcessInfo.processInfo.environment["QUADRANET_PORTABLE"] != nil
let cpuSettings: [SwiftSetting] =
  portable
  ? [.define("QUADRANET_PORTABLE")]
  : [.unsafeFlags(["-target-cpu", "native"])]
let kernelSettings: [SwiftSetting] = cpuSettings + [
  .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
  name: "QuadraNet",
  products: [
    .library(name: "QuadraCore", targets: ["QuadraCore"]),
    .library(name: "QuadraAutograd", targets: ["QuadraAutograd"]),
    .library(name: "QuadraNN", targets: ["QuadraNN"]),
    .library(name: "QuadraModels", targets: ["QuadraModels"]),
    .library(name: "QuadraData", targets: ["QuadraData"]),
    .library(name: "QuadraIO", targets: ["QuadraIO"]),
    .library(name: "QuadraTraining", targets: ["QuadraTraining"]),
    .library(name: "QuadraDeploy", targets: ["QuadraDeploy"]),
    .executable(name: "quadranet", targets: ["quadranet"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
  ],
  targets: [
    // Tensor storage, the tracking allocator, threading and the compute kernels.
    .target(name: "QuadraCore", swiftSettings: kernelSettings),
    // Reverse-mode automatic differentiation over QuadraCore tensors.
    .target(name: "QuadraAutograd", dependencies: ["QuadraCore"], swiftSettings: kernelSettings),
    // Modules (layers), parameters, optimizers and learning-rate schedules.
    .target(name: "QuadraNN", dependencies: ["QuadraCore", "QuadraAutograd"], swiftSettings: kernelSettings),
    // QuadraNet, HorNet and ConvNeXt built from Codable configs, and the model registry.
    .target(name: "QuadraModels", dependencies: ["QuadraNN"], swiftSettings: cpuSettings),
    // zlib, for gzip-compressed IDX files (Foundation on Linux cannot inflate).
    .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
    // Datasets: IDX (MNIST / Fashion-MNIST), the embedded 8x8 digits, augmentation, batching.
    .target(
      name: "QuadraData", dependencies: ["QuadraCore", "CZlib"],
      resources: [.copy("Resources")], swiftSettings: cpuSettings),
    // Safetensors checkpoints, JSON/JSONL results and SVG plots.
    .target(name: "QuadraIO", dependencies: ["QuadraCore"], swiftSettings: cpuSettings),
    // Training and evaluation loops, PyTorch-compatible checkpoints, run outputs (metrics, summary, curves).
    .target(
      name: "QuadraTraining", dependencies: ["QuadraModels", "QuadraData", "QuadraIO"], swiftSettings: cpuSettings),
    // Kernel and model benchmarks (a library so tests can exercise them).
    .target(
      name: "QuadraBench", dependencies: ["QuadraCore", "QuadraAutograd", "QuadraNN", "QuadraModels"],
      swiftSettings: kernelSettings),
    // Deployment: ONNX export (messages generated from onnx.proto 1.17.0), NumPy .npy I/O, prediction.
    .target(
      name: "QuadraDeploy",
      dependencies: [
        "QuadraModels", "QuadraData", "QuadraIO", "QuadraTraining",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: cpuSettings),
    // Hardware-aware architecture search: search spaces, memory and latency models, constrained evolution.
    .target(
      name: "QuadraSearch", dependencies: ["QuadraModels", "QuadraBench", "QuadraIO"], swiftSettings: cpuSettings),
    .executableTarget(
      name: "quadranet",
      dependencies: [
        "QuadraCore", "QuadraAutograd", "QuadraNN", "QuadraModels", "QuadraData", "QuadraIO", "QuadraBench", "QuadraTraining",
        "QuadraDeploy", "QuadraSearch", .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: cpuSettings),
    .testTarget(name: "QuadraCoreTests", dependencies: ["QuadraCore"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraAutogradTests", dependencies: ["QuadraCore", "QuadraAutograd"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraModelsTests", dependencies: ["QuadraModels"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraDataTests", dependencies: ["QuadraData"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraIOTests", dependencies: ["QuadraIO"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraTrainingTests", dependencies: ["QuadraTraining"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraSearchTests", dependencies: ["QuadraSearch"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraDeployTests", dependencies: ["QuadraDeploy"], swiftSettings: cpuSettings),
  ]
)
