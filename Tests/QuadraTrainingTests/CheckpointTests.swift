import Foundation
import Testing

@testable import QuadraData
@testable import QuadraIO
@testable import QuadraModels
@testable import QuadraTraining

@Suite struct LayoutConversionTests {
  /// Random values with a recognizable element for every index.
  func sequence(_ shape: [Int]) -> Tensor {
    Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { Float($0) * 0.5 - 3 })
  }

  @Test func convolutionWeightMapsNCHWToOHWI() {
    // A PyTorch conv weight [O=3, I=2, kh=2, kw=3] (odd sizes, not square).
    let torch = sequence([3, 2, 2, 3])
    let engine = TorchLayout.convolution.fromTorch(torch)
    #expect(engine.shape == [3, 2, 3, 2])
    for o in 0..<3 {
      for i in 0..<2 {
        for y in 0..<2 {
          for x in 0..<3 { #expect(engine[o, y, x, i] == torch[o, i, y, x]) }
        }
      }
    }
    // A known element: torch[2, 1, 0, 2] is at flat index ((2·2 + 1)·2 + 0)·3 + 2 = 32.
    #expect(engine[2, 0, 2, 1] == Float(32) * 0.5 - 3)
    #expect(bitPatterns(TorchLayout.convolution.toTorch(engine)) == bitPatterns(torch))
    #expect(TorchLayout.convolution.torchShape(engineShape: engine.shape) == [3, 2, 2, 3])
  }

  @Test func depthwiseWeightMapsC1HWToHWC() {
    let torch = sequence([5, 1, 3, 3])
    let engine = TorchLayout.depthwiseConvolution.fromTorch(torch)
    #expect(engine.shape == [3, 3, 5])
    for c in 0..<5 {
      for y in 0..<3 {
        for x in 0..<3 { #expect(engine[y, x, c] == torch[c, 0, y, x]) }
      }
    }
    #expect(bitPatterns(TorchLayout.depthwiseConvolution.toTorch(engine)) == bitPatterns(torch))
    #expect(TorchLayout.depthwiseConvolution.engineShape(torchShape: [5, 2, 3, 3]) == nil)
  }

  @Test func pointwiseWeightIsAReshape() {
    let torch = sequence([4, 6, 1, 1])
    let engine = TorchLayout.pointwiseConvolution.fromTorch(torch)
    #expect(engine.shape == [4, 6])
    #expect(engine[3, 5] == torch[3, 5, 0, 0])
    #expect(TorchLayout.pointwiseConvolution.toTorch(engine).shape == [4, 6, 1, 1])
  }
}

@Suite struct CheckpointTests {
  /// A PyTorch state dict built element by element (not with the code under test): what
  /// `safetensors.torch.save_file(model.state_dict())` writes, without any metadata.
  func handMadeTorchStateDict(of model: Module) -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for (name, parameter) in model.namedParameters() {
      let value = parameter.variable.value
      let s = value.shape
      switch parameter.torchLayout {
      case .identical:
        result[name] = value.copy()
      case .convolution:
        var t = Tensor(zeros: [s[0], s[3], s[1], s[2]])
        for o in 0..<s[0] {
          for y in 0..<s[1] {
            for x in 0..<s[2] {
              for i in 0..<s[3] { t[o, i, y, x] = value[o, y, x, i] }
            }
          }
        }
        result[name] = t
      case .depthwiseConvolution:
        var t = Tensor(zeros: [s[2], 1, s[0], s[1]])
        for y in 0..<s[0] {
          for x in 0..<s[1] {
            for c in 0..<s[2] { t[c, 0, y, x] = value[y, x, c] }
          }
        }
        result[name] = t
      case .pointwiseConvolution:
        result[name] = Tensor(shape: [s[0], s[1], 1, 1], scalars: value.scalars)
      }
    }
    return result
  }

  @Test(arguments: [Tiny.quadraNet, Tiny.horNet, Tiny.convNeXt])
  func pyTorchStateDictWithoutMetadataLoads(config: ModelConfig) throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let source = try VisionModel(config: config, seed: 3)
    let url = directory.appendingPathComponent("torch.safetensors")
    try Safetensors.write(handMadeTorchStateDict(of: source), to: url)

    let checkpoint = try WeightsCheckpoint.read(from: url)
    #expect(checkpoint.config == nil)
    let loaded = try checkpoint.makeModel(requested: config)
    #expect(parametersAreIdentical(source, loaded))
    // Without a config, the model must be named.
    let error = thrownError { _ = try checkpoint.makeModel() }
    #expect((error as? CheckpointError).map { "\($0)" }?.contains("--model") == true)
  }

  @Test func writtenWeightsAreThePyTorchStateDict() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let model = try VisionModel(config: Tiny.horNet, seed: 5)
    let url = directory.appendingPathComponent("model.safetensors")
    try WeightsCheckpoint(model: model, dataset: "digits", epoch: 3, globalStep: 42).write(to: url)
    let file = try Safetensors.read(contentsOf: url)
    let expected = handMadeTorchStateDict(of: model)
    #expect(Set(file.tensors.keys) == Set(expected.keys))
    for (name, tensor) in expected {
      #expect(file.tensors[name]!.shape == tensor.shape, "\(name)")
      #expect(bitPatterns(file.tensors[name]!) == bitPatterns(tensor), "\(name)")
    }
    #expect(file.tensors["stages.0.0.gnconv.proj_in.weight"]!.shape == [16, 8, 1, 1])
    #expect(file.tensors["downsample_layers.0.0.weight"]!.shape == [8, 1, 2, 2])
    #expect(file.metadata["model"] == "tiny-hornet")
    #expect(file.metadata["epoch"] == "3" && file.metadata["global_step"] == "42")
    let config = try JSONDecoder().decode(ModelConfig.self, from: Data(file.metadata["config"]!.utf8))
    #expect(config == Tiny.horNet)
  }

  @Test func classNamesRoundTripAndMustMatchTheClassCount() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let model = try VisionModel(config: Tiny.quadraNet)
    let names = (0..<10).map { "class \($0) \u{e9}" }
    let url = directory.appendingPathComponent("model.safetensors")
    try WeightsCheckpoint(model: model, classNames: names).write(to: url)
    #expect(try Safetensors.read(contentsOf: url).metadata["class_names"]?.contains("class 9") == true)
    #expect(try WeightsCheckpoint.read(from: url).classNames == names)
    var wrong = WeightsCheckpoint(model: model)
    wrong.classNames = ["a", "b"]
    try wrong.write(to: url)
    let error = thrownError { _ = try WeightsCheckpoint.read(from: url) }
    #expect("\(error!)".contains("metadata 'class_names'") && "\(error!)".contains("2 class names for the config's 10"))
  }

  @Test func trainingCheckpointRoundTripsWeightsAndOptimizerState() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 48, testCount: 16)
    var options = Tiny.options
    options.epochs = 1
    options.emaDecay = 0.9
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: splits, dataset: "digits", options: options)
    try trainer.run(outputDirectory: directory)
    let saved = trainer.checkpoint()

    let loaded = try TrainingCheckpoint.read(from: directory)
    let model = try loaded.weights.makeModel(requested: Tiny.quadraNet)
    #expect(parametersAreIdentical(model, trainer.model))
    #expect(loaded.state.globalStep == 3 && loaded.state.epoch == 1 && loaded.state.optimizerStep == 3)
    #expect(loaded.state.options == options)
    #expect(loaded.state.batchIterator == trainer.iterator.state)
    #expect(loaded.state.dropPathGenerator == trainer.model.randomSource.generator)
    let parameterCount = trainer.model.namedParameters().count
    #expect(loaded.optimizerMoments.count == 2 * parameterCount)
    for (key, tensor) in saved.optimizerMoments {
      #expect(bitPatterns(loaded.optimizerMoments[key]!) == bitPatterns(tensor), "\(key)")
    }
    #expect(loaded.emaShadow?.count == parameterCount)
    // The moments are stored under PyTorch names and layouts.
    #expect(loaded.optimizerMoments["exp_avg.stages.0.0.QuadraConv.conv1.weight"]?.shape == [8, 1, 3, 3])
    // The EMA weights file is a loadable state dict too.
    let ema = try WeightsCheckpoint.read(from: directory.appendingPathComponent(CheckpointFiles.emaWeights))
    _ = try ema.makeModel()
  }

  @Test func missingUnexpectedAndMisshapenKeysAreListed() throws {
    let model = try VisionModel(config: Tiny.quadraNet)
    var tensors = WeightsCheckpoint.torchStateDict(of: model)
    tensors["head.weight"] = nil
    tensors["norm.bias"] = nil
    tensors["stages.0.0.extra"] = Tensor(zeros: [1])
    tensors["stages.1.0.QuadraConv.conv2.weight"] = Tensor(zeros: [16, 1, 5, 5])
    let error = thrownError { try WeightsCheckpoint.load(tensors, into: model, path: "x.safetensors") }
    guard case .stateDictMismatch(_, let missing, let unexpected, let wrongShapes)? = error as? CheckpointError else {
      Issue.record("expected stateDictMismatch, got \(String(describing: error))")
      return
    }
    #expect(Set(missing) == ["head.weight", "norm.bias"])
    #expect(unexpected == ["stages.0.0.extra"])
    #expect(wrongShapes == [.init(name: "stages.1.0.QuadraConv.conv2.weight", expected: [16, 1, 3, 3], found: [16, 1, 5, 5])])
    let message = "\(error!)"
    #expect(message.contains("x.safetensors"))
    #expect(message.contains("missing keys: ") && message.contains("head.weight") && message.contains("norm.bias"))
    #expect(message.contains("unexpected keys: stages.0.0.extra"))
    #expect(message.contains("expected [16, 1, 3, 3], found [16, 1, 5, 5]"))
  }

  @Test func failedLoadLeavesTheModelUnchanged() throws {
    let model = try VisionModel(config: Tiny.quadraNet, seed: 1)
    let reference = try VisionModel(config: Tiny.quadraNet, seed: 1)
    var tensors = WeightsCheckpoint.torchStateDict(of: try VisionModel(config: Tiny.quadraNet, seed: 2))
    tensors["head.bias"] = Tensor(zeros: [11])
    #expect(throws: CheckpointError.self) { try WeightsCheckpoint.load(tensors, into: model, path: "p") }
    #expect(parametersAreIdentical(model, reference))
  }

  @Test func longListsAreAbbreviated() throws {
    let model = try VisionModel(config: Tiny.quadraNet)
    let error = thrownError { try WeightsCheckpoint.load([:], into: model, path: "empty") }
    let message = "\(error!)"
    #expect(message.contains("in all)"))
    #expect(message.contains("downsample_layers.0.0.weight"))
  }

  @Test func configMismatchNamesTheDifferences() throws {
    let checkpoint = WeightsCheckpoint(model: try VisionModel(config: Tiny.quadraNet))
    var other = Tiny.quadraNet
    other.widths = [8, 24]
    other.name = "other"
    let error = thrownError { _ = try checkpoint.makeModel(requested: other) }
    let message = "\(error!)"
    #expect(message.contains("widths: saved [8, 16], requested [8, 24]"))
    #expect(message.contains("tiny-quadranet") && message.contains("other"))
    // The same config is accepted.
    _ = try checkpoint.makeModel(requested: Tiny.quadraNet)
  }

  @Test func mismatchedStateFileIsDetected() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 32, testCount: 16)
    var options = Tiny.options
    options.epochs = 2
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: splits, dataset: "digits", options: options)
    try trainer.run(outputDirectory: directory, stopAfterEpoch: 1)
    let stateURL = directory.appendingPathComponent(CheckpointFiles.trainingState)
    let stateAfterEpoch1 = try Data(contentsOf: stateURL)
    try trainer.run(outputDirectory: directory)
    // A directory as versions before paired saves wrote it (top-level files only), after a crash between
    // the two writes: state of epoch 1 next to weights of epoch 2.
    try FileManager.default.removeItem(at: directory.appendingPathComponent(RunDirectory.checkpointsFolder))
    try FileManager.default.removeItem(at: stateURL)
    try stateAfterEpoch1.write(to: stateURL)
    let error = thrownError { _ = try TrainingCheckpoint.read(from: directory) }
    #expect("\(error!)".contains("do not belong to the same save") && "\(error!)".contains("--overwrite"))
    // Weights alone (no state file) cannot be resumed.
    try FileManager.default.removeItem(at: stateURL)
    let missing = thrownError { _ = try TrainingCheckpoint.read(from: directory) }
    #expect("\(missing!)".contains(CheckpointFiles.trainingState))
  }
}
