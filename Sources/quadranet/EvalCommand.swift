import ArgumentParser
import Foundation
import QuadraData
import QuadraDeploy
import QuadraInference
import QuadraModels
import QuadraTraining

struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Evaluate a checkpoint's top-1 accuracy on a dataset's test split.",
    discussion: """
      The checkpoint is a safetensors file with PyTorch names and layouts (ours, or a PyTorch \
      state dict saved with safetensors.torch.save_file), or a run directory (its model.safetensors). \
      A file without our config metadata needs --model.
      """)

  @Option(help: "The weights: a .safetensors file or a run directory.") var checkpoint: String
  @Option(help: "digits, fashion-mnist, an IDX directory, an image folder or a .npz file (default: the checkpoint's dataset, else digits).")
  var dataset: String?
  @Option(help: "Registered model; required for files without a saved config, checked against it otherwise.")
  var model: String?
  @OptionGroup var datasetOptions: DatasetOptions
  @Option(
    parsing: .unconditional,
    help: "Image folders with --test-fraction: the seed of the split, as given to train (default 0).")
  var seed: UInt64 = 0
  @Option(parsing: .unconditional, help: "Evaluation batch size, 1...65536.") var batchSize: Int = 250
  @OptionGroup var threadOptions: ThreadOptions
  @OptionGroup var memoryOptions: MemoryOptions
  @Flag(help: "Print one JSON object instead of a sentence.") var json = false

  struct Report: Codable {
    var model: String
    var dataset: String
    var accuracy: Double
    var correct: Int
    var count: Int
    var loss: Double
    /// The class names the checkpoint records (else the dataset's), in label order.
    var classNames: [String]
  }

  func validate() throws {
    try FlagCheck.integer(batchSize, in: TrainingOptions.Limits.batchSize, "--batch-size")
  }

  func run() throws {
    // The kernels' thread count comes from the context the body runs in.
    try ComputeContext(threads: threadOptions.threads).run { try Terminal.withReadableFileErrors { try evaluate() } }
  }

  /// Fails (exit status 1) on weights or a loss that are NaN or infinite: an accuracy from them means nothing.
  func evaluate() throws {
    try memoryOptions.apply()
    let weights = try WeightsCheckpoint.read(from: URL(fileURLWithPath: checkpoint))
    try Evaluator.checkFinite(weights)
    let datasetName = try DatasetName(parsing: dataset ?? weights.dataset ?? "digits")
    // The data options training recorded (--resolution, --test-fraction, --layout) apply unless flags override them.
    let data = try datasetOptions.loadTrainingData(
      datasetName, savedClassCount: weights.config?.classCount, splitSeed: seed, saved: weights.dataOptions)
    let test = data.test
    let classNames = weights.classNames ?? test.classNames
    if let saved = weights.classNames, saved != test.classNames {
      Terminal.status(
        "note: the checkpoint's classes (\(saved.prefix(5).joined(separator: ", "))…) are not the dataset's "
          + "(\(test.classNames.prefix(5).joined(separator: ", "))…); labels are compared by index")
    }
    let requested = try model.map {
      try ModelRegistry.config(named: $0, classCount: test.classCount, inputChannels: test.sampleShape[2])
    }
    let network = try weights.makeModel(requested: requested)
    try Evaluator.checkCompatibility(network.config, with: test)
    try network.config.checkInferenceMemory(
      batchSize: min(batchSize, test.count), resolution: max(test.sampleShape[0], test.sampleShape[1]))
    // The model sees inputs prepared with the statistics it was trained with, not the evaluated set's own.
    var testSet = test
    if let normalization = weights.normalization {
      if let memory = test as? Dataset { testSet = memory.renormalized(to: normalization) }
      if let folder = test as? ImageFolderDataset { testSet = folder.withNormalization(normalization) }
    }
    // The tape-free engine computes the same logits (up to rounding) faster than the tape forward.
    let engine = try InferenceEngine(model: network)
    let result = try Evaluator.evaluate(on: testSet, batchSize: batchSize, loader: data.loader) { try engine.logits($0) }
    guard result.loss.isFinite else {
      throw EvaluationError.nonFiniteLoss(path: weights.path, dataset: test.name, loss: result.loss)
    }
    let report = Report(
      model: network.config.name, dataset: datasetName.description, accuracy: result.accuracy, correct: result.correct,
      count: result.count, loss: result.loss, classNames: classNames)
    if json {
      try Terminal.printJSON(report)
    } else {
      print(
        String(
          format: "%@ on %@: test accuracy %.2f%% (%d/%d), loss %.4f", report.model, test.name,
          100 * report.accuracy, report.correct, report.count, report.loss))
      print("classes: \(classNames.joined(separator: ", "))")
    }
  }
}
