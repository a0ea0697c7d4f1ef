// swift-tools-version:6.1
import Foundation
import PackageDescription

// Kernels are written with SIMD8/SIMD16 vectors. They only become real vector
// instructions when the compiler may use the host's vector extensions; without
// them `addingProduct` lowers to scalar `fmaf` calls (~25x slower). So a build of
// this package as the root targets the machine it is built on (`-target-cpu native`)
// and drops exclusivity checks in the kernels' release builds.
//
// SwiftPM refuses such `unsafeFlags` in a package that is depended on by version
// ("contains unsafe build flags"). When this manifest is evaluated as such a
// dependency, i.e. from a checkout that SwiftPM or Xcode made (`.build/checkouts/`,
// `SourcePackages/checkouts/`), it declares no unsafe flags; the dependent gets the
// fast kernels by passing the flag to its whole build:
// `swift build -c release -Xswiftc -target-cpu -Xswiftc native`.
// `QUADRANET_PORTABLE=1` gives the same flag-free build as the root, for binaries
// that are copied to other machines (slower, same results up to rounding).
let environment = ProcessInfo.processInfo.environment
let isDependencyCheckout = ["/.build/checkouts/", "/SourcePackages/checkouts/"].contains {
  Context.packageDirectory.contains($0)
}
let portable = environment["QUADRANET_PORTABLE"] != nil || isDependencyCheckout
// `QUADRANET_TARGET_CPU=znver3` (any CPU name `swiftc -target-cpu` takes) builds for that processor instead
// of this one: a binary for a fleet of older machines, or an AVX2 build measured on an AVX-512 machine. The
// kernels read which vector ISA the build targets (`CQuadraTarget`) and never pick a tile it cannot hold.
// An unknown name is the compiler's error, which lists the valid ones.
let targetCPU = environment["QUADRANET_TARGET_CPU"].flatMap { $0.isEmpty ? nil : $0 }
let cpuSettings: [SwiftSetting] =
  portable
  ? [.define("QUADRANET_PORTABLE")]
  : [.unsafeFlags(["-target-cpu", targetCPU ?? "native"])] + (targetCPU == nil ? [] : [.define("QUADRANET_TARGET_CPU")])
let kernelSettings: [SwiftSetting] =
  cpuSettings + (portable ? [] : [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))])

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
    .library(name: "QuadraInference", targets: ["QuadraInference"]),
    .executable(name: "quadranet", targets: ["quadranet"]),
  ],
  // `swift build --traits MPI` adds data-parallel training over Open MPI (`quadranet train --distributed`);
  // it needs `apt-get install openmpi-bin libopenmpi-dev`. The default build has no MPI dependency.
  traits: [.trait(name: "MPI", description: "Data-parallel training over Open MPI (pkg-config ompi-c).")],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
  ],
  targets: [
    // Tensor storage, the tracking allocator, threading and the compute kernels.
    // Software prefetch hints for the kernels (a header; Swift cannot import Clang's prefetch macro).
    .systemLibrary(name: "CQuadraPrefetch", path: "Sources/CQuadraPrefetch"),
    // The vector ISA the build targets (Clang's feature macros, evaluated for the build's `-target-cpu`).
    .systemLibrary(name: "CQuadraTarget", path: "Sources/CQuadraTarget"),
    .target(name: "QuadraCore", dependencies: ["CQuadraPrefetch", "CQuadraTarget"], swiftSettings: kernelSettings),
    // Reverse-mode automatic differentiation over QuadraCore tensors.
    .target(name: "QuadraAutograd", dependencies: ["QuadraCore"], swiftSettings: kernelSettings),
    // Modules (layers), parameters, optimizers and learning-rate schedules.
    .target(name: "QuadraNN", dependencies: ["QuadraCore", "QuadraAutograd"], swiftSettings: kernelSettings),
    // QuadraNet, HorNet and ConvNeXt built from Codable configs, and the model registry.
    .target(name: "QuadraModels", dependencies: ["QuadraNN"], swiftSettings: cpuSettings),
    // zlib, for gzip-compressed IDX files and PNG (Foundation on Linux cannot inflate). Not named CZlib:
    // ZIPFoundation ships a module of that name.
    .systemLibrary(name: "CQuadraZlib", path: "Sources/CQuadraZlib"),
    // Datasets: IDX (MNIST / Fashion-MNIST), the embedded 8x8 digits, augmentation, batching;
    // PNG/JPEG decoding and NumPy .npy/.npz arrays (ZIPFoundation reads the .npz zip).
    .target(
      name: "QuadraData",
      dependencies: ["QuadraCore", "CQuadraZlib", .product(name: "ZIPFoundation", package: "ZIPFoundation")],
      resources: [.copy("Resources")], swiftSettings: cpuSettings),
    // Safetensors checkpoints, JSON/JSONL results and SVG plots.
    .target(name: "QuadraIO", dependencies: ["QuadraCore"], swiftSettings: cpuSettings),
    // Data parallelism without MPI: the Communicator protocol, an in-process (threads) communicator,
    // the bucketed gradient all-reduce hook.
    .target(name: "QuadraDistributed", dependencies: ["QuadraNN"], swiftSettings: cpuSettings),
    // Open MPI's mpi.h (+ a shim for its handle macros) and the MPI communicator: only with the MPI trait.
    .systemLibrary(
      name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["openmpi-bin", "libopenmpi-dev"])]),
    .target(
      name: "QuadraMPI", dependencies: ["QuadraDistributed", .target(name: "CMPI", condition: .when(traits: ["MPI"]))],
      swiftSettings: cpuSettings),
    // Training and evaluation loops, PyTorch-compatible checkpoints, run outputs (metrics, summary, curves).
    .target(
      name: "QuadraTraining", dependencies: ["QuadraModels", "QuadraData", "QuadraIO", "QuadraDistributed"], swiftSettings: cpuSettings),
    // Tape-free inference: a VisionModel compiled into fused steps over preallocated buffers.
    .target(name: "QuadraInference", dependencies: ["QuadraCore", "QuadraModels"], swiftSettings: kernelSettings),
    // Kernel and model benchmarks (a library so tests can exercise them).
    .target(
      name: "QuadraBench", dependencies: ["QuadraCore", "QuadraAutograd", "QuadraNN", "QuadraModels", "QuadraInference"],
      swiftSettings: kernelSettings),
    // Deployment: ONNX export (messages generated from onnx.proto 1.17.0), prediction.
    .target(
      name: "QuadraDeploy",
      dependencies: [
        "QuadraModels", "QuadraData", "QuadraIO", "QuadraTraining", "QuadraInference",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: cpuSettings),
    // Hardware-aware architecture search: search spaces, memory and latency models, constrained evolution.
    .target(
      name: "QuadraSearch", dependencies: ["QuadraModels", "QuadraBench", "QuadraIO", "QuadraTraining"], swiftSettings: cpuSettings),
    .executableTarget(
      name: "quadranet",
      dependencies: [
        "QuadraCore", "QuadraAutograd", "QuadraNN", "QuadraModels", "QuadraData", "QuadraIO", "QuadraBench", "QuadraTraining",
        "QuadraDeploy", "QuadraInference", "QuadraDistributed", "QuadraSearch", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .target(name: "QuadraMPI", condition: .when(traits: ["MPI"])),
      ],
      swiftSettings: cpuSettings),
    .testTarget(name: "QuadraCoreTests", dependencies: ["QuadraCore"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraAutogradTests", dependencies: ["QuadraCore", "QuadraAutograd"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraModelsTests", dependencies: ["QuadraModels"], swiftSettings: cpuSettings),
    .testTarget(
      name: "QuadraDataTests", dependencies: ["QuadraData", .product(name: "ZIPFoundation", package: "ZIPFoundation")],
      resources: [.copy("Fixtures")], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraIOTests", dependencies: ["QuadraIO"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraTrainingTests", dependencies: ["QuadraTraining"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraDistributedTests", dependencies: ["QuadraDistributed", "QuadraTraining"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraSearchTests", dependencies: ["QuadraSearch", "QuadraData", "QuadraTraining"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraDeployTests", dependencies: ["QuadraDeploy"], swiftSettings: cpuSettings),
    .testTarget(name: "QuadraInferenceTests", dependencies: ["QuadraInference"], swiftSettings: cpuSettings),
  ]
)
