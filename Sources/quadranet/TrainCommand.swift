import ArgumentParser
import Foundation
import QuadraData
import QuadraIO
import QuadraModels
import QuadraTraining

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a model and evaluate it on the test split after every epoch.",
    discussion: """
      With no options, trains quadranet-digits on the embedded 8×8 digits. Writes into the output \
      directory: model.safetensors (PyTorch names and layouts), training_state.safetensors (for \
      --resume), metrics.jsonl, curves.svg and summary.json. Recipe options not given take the \
      dataset's defaults, or the checkpoint's values when resuming.
      """)

  @Option(help: "Registered model (default: quadranet-digits for digits, quadranet-28 otherwise).")
  var model: String?
  @Option(
    help: ArgumentHelp(
      "A model config file instead of --model: one JSON object with the fields of ModelConfig (name, "
        + "inputChannels, classCount, stemPatchSize, stemKernelSize?, depths, widths, mixers, mlpRatio, "
        + "layerScaleInit, dropPathRate, weightInitialization?), the object a checkpoint stores under its "
        + "'config' metadata key; see 'Model configs' in the README for the format and every field's range.",
      valueName: "file.json"))
  var config: String?
  @Option(help: "digits, fashion-mnist, or a directory with MNIST-style IDX files (default: digits, or the checkpoint's when resuming).")
  var dataset: String?
  // Numeric options parse `.unconditional`ly, so a negative value gets the range error below
  // instead of ArgumentParser's "missing value".
  @Option(parsing: .unconditional, help: "Epochs to train, 1...10000.") var epochs: Int?
  @Option(parsing: .unconditional, help: "Training batch size, 1...65536 (and at most the training-set size).")
  var batchSize: Int?
  @Option(name: .customLong("lr"), parsing: .unconditional, help: "Peak learning rate (AdamW, cosine schedule), in (0, 10].")
  var learningRate: Float?
  @OptionGroup var threadOptions: ThreadOptions
  @OptionGroup var memoryOptions: MemoryOptions
  @Option(parsing: .unconditional, help: "Seed of the weights, shuffling, augmentation and drop path, 0...2^64-1.")
  var seed: UInt64?
  @Option(help: "Output directory (default: runs/<model>-<dataset>, or the checkpoint's directory when resuming).")
  var out: String?
  @Option(help: "Continue a run: its directory or its model.safetensors (training_state.safetensors must be next to it).")
  var resume: String?
  @Option(parsing: .unconditional, help: "Linear learning-rate warm-up, in epochs, 0...epochs.") var warmupEpochs: Double?
  @Option(parsing: .unconditional, help: "AdamW decoupled weight decay, in [0, 1).") var weightDecay: Float?
  @Option(parsing: .unconditional, help: "Label smoothing of the cross-entropy, in [0, 1).") var labelSmoothing: Float?
  @Option(
    name: .customLong("ema"), parsing: .unconditional,
    help: "Keep an exponential moving average of the weights with this decay, in (0, 1), and evaluate it.")
  var emaDecay: Float?
  @Option(name: .customLong("clip-grad"), parsing: .unconditional, help: "Clip the global gradient norm to this value, in (0, 1e6].")
  var clipGradient: Float?
  // The default is the recipe's (TrainingRecipe.defaultOptions): 1 pixel for Fashion-MNIST and other
  // 28×28 IDX data, the digits dataset's 1 pixel for digits; a resumed run keeps the saved value.
  @Option(
    parsing: .unconditional,
    help: "Random-crop padding in pixels, 0...64 (0: no crop; default: 1, the recipe's for every dataset, or the checkpoint's when resuming).")
  var cropPadding: Int?
  @Option(help: "Random horizontal flips, true or false (default: the recipe's: on for fashion-mnist only).") var flip: Bool?
  @Option(
    parsing: .unconditional,
    help: ArgumentHelp("Stop after this epoch, 1...10000, as if interrupted (for testing --resume).", visibility: .hidden))
  var stopAfterEpoch: Int?
  @Flag(help: "Print the summary as JSON on standard output.") var json = false

  func validate() throws {
    if model != nil && config != nil { throw ValidationError("give either --model or --config, not both") }
    typealias Limits = TrainingOptions.Limits
    try FlagCheck.integer(epochs, in: Limits.epochs, "--epochs")
    try FlagCheck.integer(batchSize, in: Limits.batchSize, "--batch-size")
    try FlagCheck.real(learningRate, in: Limits.learningRate, "(0, 10]", "--lr")
    try FlagCheck.real(warmupEpochs, in: 0...Double(epochs ?? Limits.epochs.upperBound), "[0, epochs]", "--warmup-epochs")
    try FlagCheck.real(weightDecay, in: 0..<1, "[0, 1)", "--weight-decay")
    try FlagCheck.real(labelSmoothing, in: 0..<1, "[0, 1)", "--label-smoothing")
    try FlagCheck.real(emaDecay, in: Float.leastNormalMagnitude..<1, "(0, 1)", "--ema")
    try FlagCheck.real(clipGradient, in: Limits.clipGradientNorm, "(0, 1e6]", "--clip-grad")
    try FlagCheck.integer(cropPadding, in: Limits.cropPadding, "--crop-padding")
    try FlagCheck.integer(stopAfterEpoch, in: Limits.epochs, "--stop-after-epoch")
  }

  /// The recipe: `base` with every given flag applied.
  func options(base: TrainingOptions, datasetDefault: Augmentation) -> TrainingOptions {
    var options = base
    if cropPadding != nil || flip != nil {
      let start = options.augmentation ?? datasetDefault
      options.augmentation = Augmentation(
        padding: cropPadding ?? start.padding, horizontalFlip: flip ?? start.horizontalFlip)
    }
    if let epochs { options.epochs = epochs }
    if let batchSize { options.batchSize = batchSize }
    if let learningRate { options.learningRate = learningRate }
    if let warmupEpochs {
      options.warmupEpochs = warmupEpochs
    } else {
      // The recipe's warm-up (2 epochs for digits) must not make a short run such as `--epochs 1` invalid.
      options.warmupEpochs = Swift.min(options.warmupEpochs, Double(options.epochs))
    }
    if let weightDecay { options.weightDecay = weightDecay }
    if let labelSmoothing { options.labelSmoothing = labelSmoothing }
    if let emaDecay { options.emaDecay = emaDecay }
    if let clipGradient { options.clipGradientNorm = clipGradient }
    if let seed { options.seed = seed }
    return options
  }

  func run() throws {
    Parallel.threadCount = threadOptions.threads
    try memoryOptions.apply()
    // Everything is validated before the output directory is touched.
    let checkpoint = try resume.map { try TrainingCheckpoint.read(from: URL(fileURLWithPath: $0)) }
    let datasetName = try DatasetName(parsing: dataset ?? checkpoint?.state.dataset ?? "digits")
    let splits = try DatasetSplits.load(datasetName)
    let datasetLabel = datasetName.description

    let trainer: Trainer
    let outputDirectory: URL
    if let resume, let checkpoint {
      let url = URL(fileURLWithPath: resume)
      if model != nil || config != nil {
        _ = try checkpoint.weights.resolvedConfig(requested: try resolveConfig(datasetName: datasetName, splits: splits))
      }
      let saved = checkpoint.state.options
      let differences = saved.differences(from: options(base: saved, datasetDefault: splits.train.defaultAugmentation))
      guard differences.isEmpty else {
        throw ValidationError(
          "--resume continues the saved recipe; these flags contradict it: \(differences.joined(separator: "; "))")
      }
      if checkpoint.state.threads != Parallel.threadCount {
        Terminal.status(
          "note: the checkpoint was trained with \(checkpoint.state.threads) thread(s), this run uses "
            + "\(Parallel.threadCount); results match an uninterrupted run only with the same count")
      }
      trainer = try Trainer(resuming: checkpoint, splits: splits, dataset: datasetLabel)
      outputDirectory = out.map { URL(fileURLWithPath: $0) }
        ?? CheckpointFiles.weightsURL(for: url).deletingLastPathComponent()
      Terminal.status("resuming \(checkpoint.state.model) from \(checkpoint.weights.path) after epoch \(checkpoint.state.epoch)")
    } else {
      let config = try resolveConfig(datasetName: datasetName, splits: splits)
      let options = options(
        base: TrainingRecipe.defaultOptions(for: datasetName), datasetDefault: splits.train.defaultAugmentation)
      try options.validate()
      let network = try VisionModel(config: config, seed: options.seed)
      trainer = try Trainer(model: network, splits: splits, dataset: datasetLabel, options: options)
      let runName = "\(config.name)-\(Self.shortName(datasetName))"
      outputDirectory = URL(fileURLWithPath: out ?? "runs/\(runName)")
    }

    let options = trainer.options
    Terminal.status(
      "training \(trainer.model.config.name) (\(trainer.model.parameterCount) params) on \(splits.train.name) "
        + "(\(splits.train.count) images, test \(splits.test.count)) for \(options.epochs) epochs, batch \(options.batchSize), "
        + "lr \(options.learningRate), \(Parallel.threadCount) thread(s) → \(outputDirectory.path)")
    let printer = ProgressPrinter(isTerminal: isatty(STDERR_FILENO) != 0) { text in
      FileHandle.standardError.write(Data(text.utf8))
    }
    let summary = try trainer.run(
      outputDirectory: outputDirectory, stopAfterEpoch: stopAfterEpoch, progress: printer.handle)
    if json {
      try Terminal.printJSON(summary)
    } else {
      print(
        String(
          format: "%@ on %@: test accuracy %.2f%% after %d epochs, %.1f s, %.0f img/s (%d thread(s)), peak memory %.1f MB",
          summary.model, summary.dataset, 100 * summary.testAccuracy, summary.epochs, summary.trainSeconds,
          summary.imagesPerSecond, summary.threads, Double(summary.peakBytes) / 1e6))
      print("checkpoint: \(outputDirectory.appendingPathComponent(CheckpointFiles.weights).path)")
    }
  }

  /// The model config from --config, --model or the dataset's default model.
  func resolveConfig(datasetName: DatasetName, splits: DatasetSplits) throws -> ModelConfig {
    if let config {
      do {
        return try ModelConfig.decodeJSON(BoundedFile.read(URL(fileURLWithPath: config), maximumBytes: 1 << 20))
      } catch let error as BoundedFileError {
        throw ValidationError("--config: \(error)")
      } catch let error as JSONInputError {
        throw ValidationError("--config \(config): not a valid model config: \(error)")
      } catch let error as ModelConfigError {
        throw ValidationError("--config \(config): \(error)")
      }
    }
    return try ModelRegistry.config(
      named: model ?? TrainingRecipe.defaultModel(for: datasetName), classCount: splits.train.classCount,
      inputChannels: splits.train.imageShape[2])
  }

  /// The dataset part of the default run name.
  static func shortName(_ dataset: DatasetName) -> String {
    switch dataset {
    case .digits, .fashionMNIST: return dataset.description
    case .idxDirectory(let path): return URL(fileURLWithPath: path).lastPathComponent
    }
  }
}
