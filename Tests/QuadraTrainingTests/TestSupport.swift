import Foundation

@testable import QuadraData
@testable import QuadraModels
@testable import QuadraTraining

/// A fresh empty directory under the system temporary directory.
func makeTemporaryDirectory() throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("quadra-training-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

func removeDirectory(_ url: URL) {
  try? FileManager.default.removeItem(at: url)
}

/// Captures the error `body` throws (nil if it does not throw).
func thrownError(_ body: () throws -> Void) -> Error? {
  do {
    try body()
    return nil
  } catch {
    return error
  }
}

enum Tiny {
  /// A two-stage QuadraNet small enough to train in milliseconds on 8×8 digits.
  static let quadraNet = ModelConfig(
    name: "tiny-quadranet", inputChannels: 1, classCount: 10, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
    mixers: [.quadratic(kernelSize: 3), .quadratic(kernelSize: 3)], mlpRatio: 2, layerScaleInit: 0.1,
    dropPathRate: 0.2)
  /// HorNet has 1×1-convolution (pointwise) weights; ConvNeXt plain depthwise ones.
  static let horNet = ModelConfig(
    name: "tiny-hornet", inputChannels: 1, classCount: 10, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
    mixers: [.gnConv(order: 2, scale: 1.0 / 3.0), .gnConv(order: 3, scale: 1.0 / 3.0)], mlpRatio: 2,
    layerScaleInit: 0.1)
  static let convNeXt = ModelConfig(
    name: "tiny-convnext", inputChannels: 1, classCount: 10, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
    mixers: [.depthwise(kernelSize: 3), .depthwise(kernelSize: 5)], mlpRatio: 2, layerScaleInit: 0.1)

  /// The first `trainCount` digits of the training split and `testCount` of the test split.
  static func digits(trainCount: Int = 96, testCount: Int = 40) throws -> DatasetSplits {
    let full = try DatasetSplits.digits()
    return DatasetSplits(
      train: full.train.subset(Array(0..<trainCount)), validation: nil,
      test: full.test.subset(Array(0..<testCount)))
  }

  static let options = TrainingOptions(
    epochs: 2, batchSize: 16, learningRate: 3e-3, minimumLearningRate: 1e-4, warmupEpochs: 0.5, weightDecay: 0.05,
    labelSmoothing: 0.1, emaDecay: nil, clipGradientNorm: nil, seed: 7, evaluationBatchSize: 32)
}

/// Every parameter of two models is bitwise equal.
func parametersAreIdentical(_ a: Module, _ b: Module) -> Bool {
  let pa = a.namedParameters(), pb = b.namedParameters()
  guard pa.map(\.name) == pb.map(\.name) else { return false }
  return zip(pa, pb).allSatisfy { x, y in
    x.parameter.variable.shape == y.parameter.variable.shape
      && x.parameter.variable.value.scalars.map(\.bitPattern) == y.parameter.variable.value.scalars.map(\.bitPattern)
  }
}

func bitPatterns(_ tensor: Tensor) -> [UInt32] { tensor.scalars.map(\.bitPattern) }
