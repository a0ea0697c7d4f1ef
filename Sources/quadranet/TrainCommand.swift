import ArgumentParser
import Foundation
import QuadraData
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
  @Option(help: "A model config as JSON (as saved in checkpoints), instead of a registered --model.")
  var config: String?
  @Option(help: "digits, fashion-mnist, or a directory with MNIST-style IDX files (default: digits, or the checkpoint's when resuming).")
  var dataset: String?
  @Option(help: "Epochs to train.") var epochs: Int?
  @Option(help: "Training batch size.") var batchSize: Int?
  @Option(name: .customLong("lr"), help: "Peak learning rate of the cosine schedule.") var learningRate: Float?
  @OptionGroup var threadOptions: ThreadOptions
  @Option(help: "Seed of the weights, shuffling, augmentation and drop path.") var seed: UInt64?
  @Option(help: "Output directory (default: runs/<model>-<dataset>, or the checkpoint's directory when resuming).")
  var out: String?
  @Option(help: "Continue a run: its directory or its model.safetensors (training_state.safetensors must be next to it).")
  var resume: String?
  @Option(help: "Linear learning-rate warm-up, in epochs.") var warmupEpochs: Double?
  @Option(help: "Weight decay of conv and linear weights, in [0, 1): decoupled for AdamW, L2 for SGD.") var weightDecay: Float?
  @Option(help: "Label smoothing of the cross-entropy.") var labelSmoothing: Float?
  @Option(name: .customLong("ema"), help: "Keep an exponential moving average of the weights with this decay and evaluate it.")
  var emaDecay: Float?
  @Option(name: .customLong("clip-grad"), help: "Clip the global gradient norm to this value.")
  var clipGradient: Float?
  @Option(help: "Optimizer: adamw or sgd (default: adamw).") var optimizer: OptimizerKind?
  @Option(help: "SGD momentum, in [0, 1) (default 0 as in torch.optim.SGD; 0.9 is usual).") var momentum: Float?
  @Flag(help: "Nesterov momentum (SGD with --momentum above 0).") var nesterov = false
  @Option(help: "Micro-batches of --batch-size summed into one optimizer step, in 1...1024 (default 1).")
  var accumulateSteps: Int?
  @Option(help: "Random-crop padding in pixels (0: no crop; default: the dataset's).") var cropPadding: Int?
  @Option(help: "Random horizontal flips, true or false (default: the dataset's).") var flip: Bool?
  @Option(help: ArgumentHelp("Stop after this epoch, as if interrupted (for testing --resume).", visibility: .hidden))
  var stopAfterEpoch: Int?
  @Flag(help: "Print the summary as JSON on standard output.") var json = false

  func validate() throws {
    if model != nil && config != nil { throw ValidationError("give either --model or --config, not both") }
    if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
    if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    if let learningRate, !(learningRate.isFinite && learningRate > 0) {
      throw ValidationError("--lr must be positive, got \(learningRate)")
    }
    if let warmupEpochs, !(warmupEpochs.isFinite && warmupEpochs >= 0) {
      throw ValidationError("--warmup-epochs must be non-negative, got \(warmupEpochs)")
    }
    if let weightDecay, !(weightDecay >= 0 && weightDecay < 1) {
      throw ValidationError("--weight-decay must be in [0, 1), got \(weightDecay)")
    }
    if let labelSmoothing, !(labelSmoothing >= 0 && labelSmoothing < 1) {
      throw ValidationError("--label-smoothing must be in [0, 1), got \(labelSmoothing)")
    }
    if let emaDecay, !(emaDecay > 0 && emaDecay < 1) { throw ValidationError("--ema must be in (0, 1), got \(emaDecay)") }
    if let clipGradient, !(clipGradient.isFinite && clipGradient > 0) {
      throw ValidationError("--clip-grad must be positive, got \(clipGradient)")
    }
    if let momentum, !(momentum >= 0 && momentum < 1) { throw ValidationError("--momentum must be in [0, 1), got \(momentum)") }
    if let accumulateSteps, !TrainingOptions.accumulateStepsRange.contains(accumulateSteps) {
      throw ValidationError("--accumulate-steps must be in \(TrainingOptions.accumulateStepsRange), got \(accumulateSteps)")
    }
    if let cropPadding, cropPadding < 0 { throw ValidationError("--crop-padding must be non-negative, got \(cropPadding)") }
    if let stopAfterEpoch, stopAfterEpoch < 1 {
      throw ValidationError("--stop-after-epoch must be at least 1, got \(stopAfterEpoch)")
    }
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
    if let warmupEpochs { options.warmupEpochs = warmupEpochs }
    if let weightDecay { options.weightDecay = weightDecay }
    if let labelSmoothing { options.labelSmoothing = labelSmoothing }
    if let emaDecay { options.emaDecay = emaDecay }
    if let clipGradient { options.clipGradientNorm = clipGradient }
    if let seed { options.seed = seed }
    if let optimizer { options.optimizer = optimizer }
    if let momentum { options.momentum = momentum }
    if nesterov { options.nesterov = true }
    if let accumulateSteps { options.accumulateSteps = accumulateSteps }
    return options
  }

  func run() throws {
    // The kernels' thread count comes from the context the body runs in.
    try ComputeContext(threads: threadOptions.threads).run { try runInContext() }
  }

  private func runInContext() throws {
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
      let data: Data
      do {
        data = try Data(contentsOf: URL(fileURLWithPath: config))
      } catch {
        throw ValidationError("--config \(config): cannot read the file (\(error.localizedDescription))")
      }
      do {
        let decoded = try JSONDecoder().decode(ModelConfig.self, from: data)
        try decoded.validate()
        return decoded
      } catch let error as ModelConfigError {
        throw error
      } catch {
        throw ValidationError("--config \(config): not a valid model config (\(error))")
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

extension OptimizerKind: ExpressibleByArgument {}
