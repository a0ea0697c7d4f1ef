import Foundation
import Testing

@testable import QuadraData
@testable import QuadraModels
@testable import QuadraTraining

/// Records the gradients each optimizer step's hooks see.
final class RecordingHook: GradientHook {
  var steps: [Int] = []
  var gradients: [[String: Tensor]] = []

  func processGradients(of parameters: [(name: String, parameter: Parameter)], step: Int) {
    steps.append(step)
    gradients.append(
      Dictionary(uniqueKeysWithValues: parameters.compactMap { entry in entry.parameter.variable.grad.map { (entry.name, $0.copy()) } }))
  }
}

/// Multiplies every gradient by a factor, or replaces one with a wrongly shaped tensor.
struct RewritingHook: GradientHook {
  var factor: Float = 1
  var misshape = false

  func processGradients(of parameters: [(name: String, parameter: Parameter)], step: Int) {
    for entry in parameters where entry.parameter.variable.grad != nil {
      entry.parameter.variable.grad! *= factor
    }
    if misshape { parameters[0].parameter.variable.grad = Tensor(zeros: [1]) }
  }
}

struct FailingHook: GradientHook {
  struct Failure: Error {}
  func processGradients(of parameters: [(name: String, parameter: Parameter)], step: Int) throws { throw Failure() }
}

/// `max |a − b| ≤ tolerance · max |b|`.
func isClose(_ a: Tensor, _ b: Tensor, tolerance: Float = 1e-5) -> Bool {
  guard a.shape == b.shape else { return false }
  let scale = b.scalars.map(abs).max() ?? 0
  return zip(a.scalars, b.scalars).allSatisfy { abs($0 - $1) <= tolerance * scale }
}

@Suite(.serialized) struct OptimizerTrainingTests {
  /// No drop path and no augmentation: a sample's loss depends only on the weights.
  static var deterministicModel: ModelConfig {
    var config = Tiny.quadraNet
    config.dropPathRate = 0
    return config
  }

  static func sgdOptions(batchSize: Int, accumulateSteps: Int) -> TrainingOptions {
    var options = Tiny.options
    options.epochs = 1
    options.batchSize = batchSize
    options.accumulateSteps = accumulateSteps
    options.optimizer = .sgd
    options.momentum = 0.9
    options.learningRate = 0.05
    options.warmupEpochs = 0
    options.augmentation = Augmentation.none
    return options
  }

  /// Trains one epoch and returns the trainer and what its hook saw.
  func train(_ options: TrainingOptions, splits: DatasetSplits) throws -> (Trainer, RecordingHook) {
    let trainer = try Trainer(
      model: try VisionModel(config: Self.deterministicModel, seed: 5), splits: splits, dataset: "digits", options: options)
    let hook = RecordingHook()
    trainer.gradientHooks = [hook]
    try trainer.run(outputDirectory: nil)
    return (trainer, hook)
  }

  /// N micro-batches of B give the gradients and the step of one batch of N·B with the same samples:
  /// two full steps (6 micro-batches, N = 3), and an epoch that is one trailing step of 3 < N = 4.
  @Test(arguments: [(trainCount: 48, accumulate: 3), (trainCount: 24, accumulate: 4)])
  func accumulatedMicroBatchesMatchOneLargeBatch(trainCount: Int, accumulate: Int) throws {
    let splits = try Tiny.digits(trainCount: trainCount, testCount: 8)
    let (large, largeHook) = try train(Self.sgdOptions(batchSize: 24, accumulateSteps: 1), splits: splits)
    let (micro, microHook) = try train(Self.sgdOptions(batchSize: 8, accumulateSteps: accumulate), splits: splits)

    let steps = trainCount / 24
    #expect(micro.stepsPerEpoch == steps && micro.schedule.totalSteps == steps)
    #expect(micro.globalStep == steps && micro.optimizer.step == steps)
    #expect(largeHook.steps == Array(0..<steps) && microHook.steps == largeHook.steps)
    for (step, (a, b)) in zip(microHook.gradients, largeHook.gradients).enumerated() {
      #expect(a.count == large.model.namedParameters().count && Set(a.keys) == Set(b.keys))
      for (name, gradient) in b {
        #expect(isClose(a[name]!, gradient), "step \(step): gradient of \(name)")
      }
    }
    for (a, b) in zip(micro.model.namedParameters(), large.model.namedParameters()) {
      #expect(isClose(a.parameter.variable.value, b.parameter.variable.value), "\(a.name)")
    }
    // The comparison is not vacuous: training moved the weights.
    let initial = try VisionModel(config: Self.deterministicModel, seed: 5)
    #expect(!parametersAreIdentical(initial, micro.model))
  }

  @Test func hooksRunBeforeClippingAndTheUpdate() throws {
    let splits = try Tiny.digits(trainCount: 32, testCount: 8)
    var options = Self.sgdOptions(batchSize: 8, accumulateSteps: 2)
    options.weightDecay = 0
    options.clipGradientNorm = 1e-3

    // Zeroed gradients: SGD without weight decay leaves the weights where they were.
    let frozen = try Trainer(
      model: try VisionModel(config: Self.deterministicModel, seed: 5), splits: splits, dataset: "digits", options: options)
    let recorder = RecordingHook()
    frozen.gradientHooks = [RewritingHook(factor: 0), recorder]
    try frozen.run(outputDirectory: nil)
    #expect(recorder.steps == [0, 1])
    #expect(recorder.gradients.allSatisfy { $0.values.allSatisfy { $0.scalars.allSatisfy { $0 == 0 } } })
    #expect(parametersAreIdentical(frozen.model, try VisionModel(config: Self.deterministicModel, seed: 5)))

    // The hook sees the gradients before clipping: their norm is above the clipping limit.
    let clipped = try Trainer(
      model: try VisionModel(config: Self.deterministicModel, seed: 5), splits: splits, dataset: "digits", options: options)
    let before = RecordingHook()
    clipped.gradientHooks = [before]
    try clipped.run(outputDirectory: nil)
    let norm = before.gradients[0].values.reduce(0.0) { $0 + $1.squaredSum() }.squareRoot()
    #expect(norm > 1e-2)

    let misshapen = try Trainer(
      model: try VisionModel(config: Self.deterministicModel), splits: splits, dataset: "digits", options: options)
    misshapen.gradientHooks = [RewritingHook(misshape: true)]
    let error = thrownError { try misshapen.run(outputDirectory: nil) }
    guard case .invalidGradient(let name, _, let found)? = error as? TrainingError else {
      Issue.record("expected invalidGradient, got \(String(describing: error))")
      return
    }
    #expect(name == misshapen.model.namedParameters()[0].name && found == [1])

    let failing = try Trainer(
      model: try VisionModel(config: Self.deterministicModel), splits: splits, dataset: "digits", options: options)
    failing.gradientHooks = [FailingHook()]
    #expect(throws: FailingHook.Failure.self) { try failing.run(outputDirectory: nil) }
  }

  /// SGD with Nesterov momentum and accumulation resumes exactly; the checkpoint records the optimizer.
  @Test func sgdWithAccumulationResumesBitForBit() throws {
    let splits = try Tiny.digits(trainCount: 48, testCount: 16)
    var options = Tiny.options
    options.optimizer = .sgd
    options.momentum = 0.9
    options.nesterov = true
    options.learningRate = 0.05
    options.batchSize = 8
    options.accumulateSteps = 4  // 6 micro-batches per epoch: a full step and a trailing one of 2
    options.emaDecay = 0.9
    let full = try makeTemporaryDirectory()
    let interrupted = try makeTemporaryDirectory()
    defer { for url in [full, interrupted] { removeDirectory(url) } }

    let uninterrupted = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 2), splits: splits, dataset: "digits", options: options)
    try uninterrupted.run(outputDirectory: full)
    let first = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 2), splits: splits, dataset: "digits", options: options)
    try first.run(outputDirectory: interrupted, stopAfterEpoch: 1)

    let checkpoint = try TrainingCheckpoint.read(from: interrupted)
    #expect(checkpoint.state.options == options)
    #expect(checkpoint.state.optimizerStep == 2 && checkpoint.state.globalStep == 2)
    #expect(Set(checkpoint.optimizerMoments.keys) == Set(first.model.namedParameters().map { "momentum_buffer.\($0.name)" }))
    let resumed = try Trainer(resuming: checkpoint, splits: splits, dataset: "digits")
    #expect(resumed.optimizer is SGD && resumed.optimizer.step == 2)
    try resumed.run(outputDirectory: interrupted)
    #expect(parametersAreIdentical(uninterrupted.model, resumed.model))
    #expect(uninterrupted.history.map(\.trainLoss) == resumed.history.map(\.trainLoss))
    #expect(resumed.globalStep == 4)
  }

  @Test func resumeRejectsIncompleteOrForeignOptimizerState() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 32, testCount: 8)
    var options = Tiny.options
    options.epochs = 2
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: splits, dataset: "digits", options: options)
    try trainer.run(outputDirectory: directory, stopAfterEpoch: 1)
    let checkpoint = try TrainingCheckpoint.read(from: directory)
    let parameterCount = trainer.model.namedParameters().count

    var withoutSecondMoments = checkpoint
    withoutSecondMoments.optimizerMoments = checkpoint.optimizerMoments.filter { !$0.key.hasPrefix("exp_avg_sq.") }
    let missing = thrownError { _ = try Trainer(resuming: withoutSecondMoments, splits: splits, dataset: "digits") }
    guard case .stateDictMismatch(_, let missingKeys, let unexpected, _)? = missing as? CheckpointError else {
      Issue.record("expected stateDictMismatch, got \(String(describing: missing))")
      return
    }
    #expect(missingKeys.count == parameterCount && missingKeys.allSatisfy { $0.hasPrefix("optimizer.exp_avg_sq.") })
    #expect(unexpected.isEmpty)
    #expect("\(missing!)".contains("missing keys: optimizer.exp_avg_sq.") && "\(missing!)".contains("(\(parameterCount) in all)"))

    // SGD momentum buffers are not AdamW moments.
    var foreign = checkpoint
    foreign.optimizerMoments["momentum_buffer.head.bias"] = Tensor(zeros: [10])
    let extra = thrownError { _ = try Trainer(resuming: foreign, splits: splits, dataset: "digits") }
    #expect("\(extra!)".contains("unexpected keys: optimizer.momentum_buffer.head.bias"))

    // The same state resumed as SGD: the moments are foreign, the buffers missing.
    var asSGD = checkpoint
    asSGD.state.options.optimizer = .sgd
    asSGD.state.options.momentum = 0.9
    let switched = thrownError { _ = try Trainer(resuming: asSGD, splits: splits, dataset: "digits") }
    #expect("\(switched!)".contains("missing keys: optimizer.momentum_buffer."))
    #expect("\(switched!)".contains("unexpected keys: optimizer.exp_avg"))

    _ = try Trainer(resuming: checkpoint, splits: splits, dataset: "digits")
  }

  @Test func optionsWithoutOptimizerFieldsReadAsAdamW() throws {
    var options = Tiny.options
    options.optimizer = .sgd
    options.momentum = 0.8
    options.accumulateSteps = 3
    let data = try JSONEncoder().encode(options)
    #expect(try JSONDecoder().decode(TrainingOptions.self, from: data) == options)

    var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    #expect(object["optimizer"] as? String == "sgd" && object["accumulateSteps"] as? Int == 3)
    for key in ["optimizer", "momentum", "nesterov", "accumulateSteps"] { object[key] = nil }
    let old = try JSONDecoder().decode(TrainingOptions.self, from: try JSONSerialization.data(withJSONObject: object))
    #expect(old == Tiny.options)
    #expect(old.optimizer == .adamW && old.momentum == 0 && !old.nesterov && old.accumulateSteps == 1)
  }

  @Test func optimizerOptionsAreValidated() throws {
    func message(_ change: (inout TrainingOptions) -> Void) -> String {
      var options = Tiny.options
      change(&options)
      return thrownError { try options.validate() }.map { "\($0)" } ?? "valid"
    }
    #expect(message { $0.accumulateSteps = 0 }.contains("--accumulate-steps) must be in 1...1024, got 0"))
    #expect(message { $0.accumulateSteps = 1025 }.contains("got 1025"))
    #expect(message { $0.momentum = 0.9 }.contains("apply only to the sgd optimizer"))
    #expect(message { $0.nesterov = true }.contains("apply only to the sgd optimizer"))
    #expect(message { $0.optimizer = .sgd; $0.momentum = 1 }.contains("momentum (--momentum) must be in [0, 1), got 1.0"))
    #expect(message { $0.optimizer = .sgd; $0.nesterov = true }.contains("Nesterov momentum (--nesterov) needs a momentum"))
    #expect(message { $0.optimizer = .sgd; $0.momentum = 0.9; $0.nesterov = true; $0.accumulateSteps = 1024 } == "valid")

    var sgd = Tiny.options
    sgd.optimizer = .sgd
    sgd.accumulateSteps = 2
    #expect(Tiny.options.differences(from: sgd) == ["optimizer: saved adamw, requested sgd", "accumulate steps: saved 1, requested 2"])
  }
}
