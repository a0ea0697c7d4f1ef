import ArgumentParser
import Foundation
import QuadraData
import QuadraDistributed
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
      --resume), checkpoints/ (the newest complete pair, which --resume reads), metrics.jsonl, \
      curves.svg and summary.json; the directory is locked while training. Recipe options not given \
      take the dataset's defaults, or the checkpoint's values when resuming (where only --epochs may \
      change: the cosine schedule is then recomputed over the new total).
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
  @Option(
    help: """
      digits, fashion-mnist, a directory with MNIST-style IDX files, an image folder (DIR/train/<class>/… and \
      DIR/test/<class>/…, or DIR/<class>/… with --test-fraction), or a .npz file with x_train, y_train, x_test, \
      y_test (default: digits, or the checkpoint's when resuming).
      """)
  var dataset: String?
  @OptionGroup var datasetOptions: DatasetOptions
  // Numeric options parse `.unconditional`ly, so a negative value gets the range error below
  // instead of ArgumentParser's "missing value".
  @Option(parsing: .unconditional, help: "Epochs to train, 1...10000.") var epochs: Int?
  @Option(parsing: .unconditional, help: "Training batch size, 1...65536 (and at most the training-set size).")
  var batchSize: Int?
  @Option(name: .customLong("lr"), parsing: .unconditional, help: "Peak learning rate of the cosine schedule, in (0, 10].")
  var learningRate: Float?
  @OptionGroup var threadOptions: ThreadOptions
  @OptionGroup var memoryOptions: MemoryOptions
  @Option(parsing: .unconditional, help: "Seed of the weights, shuffling, augmentation and drop path, 0...2^64-1.")
  var seed: UInt64?
  @Option(
    help: """
      Output directory (default: runs/<model>-<dataset>, or the checkpoint's directory when resuming); created, \
      locked and checked for writing before any data is loaded.
      """)
  var out: String?
  @Option(
    help: """
      Continue a run: its directory or its model.safetensors (the newest complete checkpoint pair in its \
      checkpoints/ is resumed; runs saved before checkpoints/ existed need training_state.safetensors next to it).
      """)
  var resume: String?
  @Option(parsing: .unconditional, help: "Linear learning-rate warm-up, in epochs, 0...epochs.") var warmupEpochs: Double?
  @Option(
    parsing: .unconditional, help: "Weight decay of conv and linear weights, in [0, 1): decoupled for AdamW, L2 for SGD.")
  var weightDecay: Float?
  @Option(parsing: .unconditional, help: "Label smoothing of the cross-entropy, in [0, 1).") var labelSmoothing: Float?
  @Option(
    name: .customLong("ema"), parsing: .unconditional,
    help: "Keep an exponential moving average of the weights with this decay, in (0, 1), and evaluate it.")
  var emaDecay: Float?
  @Option(name: .customLong("clip-grad"), parsing: .unconditional, help: "Clip the global gradient norm to this value, in (0, 1e6].")
  var clipGradient: Float?
  @Option(help: "Optimizer: adamw or sgd (default: adamw).") var optimizer: OptimizerKind?
  @Option(parsing: .unconditional, help: "SGD momentum, in [0, 1) (default 0 as in torch.optim.SGD; 0.9 is usual).")
  var momentum: Float?
  @Flag(help: "Nesterov momentum (SGD with --momentum above 0).") var nesterov = false
  @Option(
    parsing: .unconditional, help: "Micro-batches of --batch-size summed into one optimizer step, in 1...1024 (default 1).")
  var accumulateSteps: Int?
  // The default is the recipe's (TrainingRecipe.defaultOptions): 1 pixel for Fashion-MNIST and other
  // 28×28 IDX data, the digits dataset's 1 pixel for digits; a resumed run keeps the saved value.
  @Option(
    parsing: .unconditional,
    help: "Random-crop padding in pixels, 0...64 (0: no crop; default: 1, the recipe's for every dataset, or the checkpoint's when resuming).")
  var cropPadding: Int?
  @Option(help: "Random horizontal flips, true or false (default: the recipe's: on for fashion-mnist and image folders).")
  var flip: Bool?
  @Option(
    help: """
      Training augmentation: rrc (random-resized-crop, scale 0.08...1, ratio 3/4...4/3, then --flip), pad-crop \
      (a random shift within --crop-padding pixels, then --flip) or none (default: rrc for image folders, \
      pad-crop for the other datasets; the checkpoint's when resuming).
      """)
  var augment: String?
  @Option(
    parsing: .unconditional,
    help: ArgumentHelp("Stop after this epoch, 1...10000, as if interrupted (for testing --resume).", visibility: .hidden))
  var stopAfterEpoch: Int?
  @Flag(
    help: """
      Start a new run in a directory that holds another run's checkpoint. Nothing is removed before this \
      run's first checkpoint is complete; then the old model.safetensors, training_state.safetensors, \
      model_ema.safetensors and checkpoints/ are replaced, summary.json is removed and metrics.jsonl and \
      curves.svg are rewritten.
      """)
  var overwrite = false
  @Flag(help: "Print the summary as JSON on standard output.") var json = false
  @Flag(
    help: """
      Data-parallel training, one rank per process started by `mpirun -np N` (needs a build with the MPI trait): \
      --batch-size stays the global batch (at least N), split across the ranks; rank 0 writes the output directory \
      and prints progress; checkpoints are the same as single-process ones.
      """)
  var distributed = false
  @Option(
    help: ArgumentHelp(
      "Write every step's loss (of the global batch), one per line, to this file (for equivalence checks).",
      valueName: "file", visibility: .hidden))
  var stepLosses: String?

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
    if let augment {
      guard let kind = AugmentationKind(rawValue: augment.lowercased()) else {
        throw ValidationError("--augment must be rrc, pad-crop or none, got '\(augment.prefix(32))'")
      }
      if kind != .padCrop && cropPadding != nil {
        throw ValidationError("--crop-padding applies to --augment pad-crop, not \(kind.rawValue)")
      }
      if kind == .none && flip == true { throw ValidationError("--augment none contradicts --flip true") }
    }
    try FlagCheck.integer(stopAfterEpoch, in: Limits.epochs, "--stop-after-epoch")
    try FlagCheck.real(momentum, in: 0..<1, "[0, 1)", "--momentum")
    try FlagCheck.integer(accumulateSteps, in: TrainingOptions.accumulateStepsRange, "--accumulate-steps")
    try DistributedLaunch.checkLaunch(distributed: distributed)
    if distributed && !DistributedLaunch.isAvailable { throw ValidationError(DistributedLaunch.missingTrait) }
  }

  /// The recipe: `base` with every given flag applied.
  func options(base: TrainingOptions, datasetDefault: Augmentation) -> TrainingOptions {
    var options = base
    let start = options.augmentation ?? datasetDefault
    // --crop-padding alone means a padded crop; otherwise the start's family is kept.
    let kind = augment.flatMap { AugmentationKind(rawValue: $0.lowercased()) } ?? (cropPadding != nil ? .padCrop : start.kind)
    if kind != start.kind || cropPadding != nil || flip != nil {
      let sameKind = kind == start.kind
      switch kind {
      case .randomResizedCrop:
        options.augmentation = Augmentation(
          horizontalFlip: flip ?? (sameKind ? start.horizontalFlip : true),
          randomResizedCrop: start.randomResizedCrop ?? .timm)
      case .padCrop:
        options.augmentation = Augmentation(
          padding: cropPadding ?? (sameKind ? start.padding : 1), horizontalFlip: flip ?? start.horizontalFlip)
      case .none:
        options.augmentation = Augmentation.none
      }
    }
    if let epochs { options.epochs = epochs }
    if let batchSize { options.batchSize = batchSize }
    if let learningRate { options.learningRate = learningRate }
    // Without --warmup-epochs a short run gets the recipe's warm-up scaled down (TrainingRecipe.fitDefaults).
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
    let communicator = distributed ? try DistributedLaunch.makeCommunicator() : nil
    do {
      // The kernels' thread count comes from the context the body runs in.
      try ComputeContext(threads: threadOptions.threads).run {
        try Terminal.withReadableFileErrors {
          try memoryOptions.apply()
          try train(communicator: communicator)
        }
      }
    } catch {
      // One failing rank ends the job (MPI_Abort, with its message) instead of leaving the others waiting.
      communicator?.abort(message: "\(error)")
      throw error
    }
    communicator.map(DistributedLaunch.finish)
  }

  /// A status line, from rank 0 only in a distributed run.
  func status(_ text: String, _ communicator: (any Communicator)?) {
    if (communicator?.rank ?? 0) == 0 { Terminal.status(text) }
  }

  /// Opens (creates, locks, probes) the output directory before any data is loaded or step taken,
  /// so a bad `--out` or a directory in use fails at once.
  func train(communicator: (any Communicator)?) throws {
    if overwrite && resume != nil {
      throw ValidationError("--overwrite starts a new run; it cannot be combined with --resume")
    }
    if let resume {
      try resumeRun(from: URL(fileURLWithPath: resume), communicator: communicator)
      return
    }
    let datasetName = try DatasetName(parsing: dataset ?? "digits")
    let configFile = try readConfigFile()
    // Resolving the name checks --model before any directory is created.
    let modelName = try configFile?.name
      ?? ModelRegistry.config(named: model ?? TrainingRecipe.defaultModel(for: datasetName)).name
    let runName = "\(modelName)-\(Self.shortName(datasetName))"
    // Only rank 0 writes (and locks) the run directory.
    let isWriter = (communicator?.rank ?? 0) == 0
    let directory = isWriter ? try RunDirectory(url: URL(fileURLWithPath: out ?? "runs/\(runName)")) : nil
    if let directory { try claim(directory, history: []) }
    var data = try datasetOptions.loadTrainingData(
      datasetName, savedClassCount: configFile?.classCount, splitSeed: seed ?? 0)
    let config = try resolveConfig(configFile: configFile, datasetName: datasetName, data: data)
    let recipe = TrainingRecipe.defaultOptions(for: datasetName)
    var options = options(base: recipe, datasetDefault: data.defaultAugmentation)
    for note in TrainingRecipe.fitDefaults(&options, recipe: recipe, warmupGiven: warmupEpochs != nil) {
      status("note: \(note)", communicator)
    }
    try options.validate()
    let network = try VisionModel(config: config, seed: options.seed)
    data.options = datasetOptions.dataOptions(augmentation: options.augmentation ?? data.defaultAugmentation)
    let trainer = try Trainer(model: network, data: data, dataset: datasetName.description, options: options)
    try train(trainer, data: data, into: directory, communicator: communicator)
  }

  /// `--resume`: the newest complete checkpoint pair of the run, continued into its own directory
  /// (or `--out`); only `--epochs` may change the recipe.
  func resumeRun(from path: URL, communicator: (any Communicator)?) throws {
    // Only rank 0 locks and writes; every rank reads the checkpoint (a shared file system across machines).
    let isWriter = (communicator?.rank ?? 0) == 0
    let directory = isWriter
      ? try RunDirectory(url: out.map { URL(fileURLWithPath: $0) } ?? RunDirectory.runURL(forResumePath: path)) : nil
    // Read under the lock when resuming in place, so no other process is saving meanwhile.
    let checkpoint = try TrainingCheckpoint.read(from: path)
    if let directory { try claim(directory, history: checkpoint.state.history) }
    let datasetName = try DatasetName(parsing: dataset ?? checkpoint.state.dataset)
    let savedData = checkpoint.weights.dataOptions
    try checkDataFlags(against: savedData)
    var data = try datasetOptions.loadTrainingData(
      datasetName, savedClassCount: checkpoint.weights.config?.classCount, splitSeed: checkpoint.state.options.seed,
      saved: savedData)
    if model != nil || config != nil {
      _ = try checkpoint.weights.resolvedConfig(
        requested: try resolveConfig(configFile: try readConfigFile(), datasetName: datasetName, data: data))
    }
    let saved = checkpoint.state.options
    var requested = options(base: saved, datasetDefault: data.defaultAugmentation)
    requested.epochs = saved.epochs  // --epochs may change the length; see Trainer.init(resuming:…).
    let differences = saved.differences(from: requested)
    guard differences.isEmpty else {
      throw ValidationError(
        "--resume continues the saved recipe (only --epochs may change); these flags contradict it: "
          + differences.joined(separator: "; "))
    }
    if checkpoint.state.threads != Parallel.threadCount {
      status(
        "note: the checkpoint was trained with \(checkpoint.state.threads) thread(s), this run uses "
          + "\(Parallel.threadCount); results match an uninterrupted run only with the same count", communicator)
    }
    data.options = datasetOptions.dataOptions(
      augmentation: saved.augmentation ?? data.defaultAugmentation, saved: savedData)
    let trainer = try Trainer(
      resuming: checkpoint, data: data, dataset: datasetName.description, epochs: epochs)
    if trainer.options.epochs != saved.epochs {
      let step = checkpoint.state.globalStep
      let (planned, recomputed) = (checkpoint.state.schedule.learningRate(at: step), trainer.schedule.learningRate(at: step))
      let nextRate = planned == recomputed
        ? "the next step's learning rate stays \(planned), later ones follow the new cosine"
        : "the next step's learning rate is \(recomputed) instead of \(planned)"
      status(
        "note: the run now has \(trainer.options.epochs) epochs instead of \(saved.epochs): the cosine schedule is "
          + "recomputed over \(trainer.options.epochs) epochs (warm-up unchanged), so \(nextRate); the result differs "
          + "from a run planned with \(trainer.options.epochs) epochs from the start", communicator)
    }
    status("resuming \(checkpoint.state.model) from \(checkpoint.weights.path) after epoch \(checkpoint.state.epoch)", communicator)
    try train(trainer, data: data, into: directory, communicator: communicator)
  }

  /// A resumed run reads its data as the checkpoint recorded: flags that contradict it are errors.
  func checkDataFlags(against saved: DataOptions?) throws {
    guard let saved else { return }
    let given = datasetOptions
    var conflicts: [String] = []
    if let value = given.resolution, let old = saved.resolution, value != old { conflicts.append("--resolution: saved \(old), requested \(value)") }
    if let value = given.testFraction, let old = saved.testFraction, value != old { conflicts.append("--test-fraction: saved \(old), requested \(value)") }
    if let value = given.layout?.lowercased(), let old = saved.layout, value != old { conflicts.append("--layout: saved \(old), requested \(value)") }
    guard conflicts.isEmpty else {
      throw ValidationError("--resume reads the data as the checkpoint recorded; these flags contradict it: " + conflicts.joined(separator: "; "))
    }
  }

  /// Checks what the directory holds against this run; explains what `--overwrite` will replace.
  func claim(_ directory: RunDirectory, history: [EpochMetrics]) throws {
    if case .replacing(let holding) = try directory.claim(history: history, overwrite: overwrite) {
      Terminal.status(
        "--overwrite: \(directory.url.path) holds \(holding); it is kept until this run's first checkpoint is complete, "
          + "then its checkpoint files and summary.json are replaced or removed")
    }
  }

  func train(
    _ trainer: Trainer, data: TrainingData, into directory: RunDirectory?, communicator: (any Communicator)?
  ) throws {
    if let communicator { try trainer.distribute(over: communicator) }
    let options = trainer.options
    let ranks = communicator.map { ", \($0.size) ranks (the global batch is split across them)" } ?? ""
    status(
      "training \(trainer.model.config.name) (\(trainer.model.parameterCount) params) on \(data.train.name) "
        + "(\(data.train.count) images of \(data.train.sampleShape.map(String.init).joined(separator: "×")), "
        + "\(data.train.classCount) classes, test \(data.test.count)\(data.inMemory == nil ? ", streamed by \(data.loader.workers) worker(s)" : "")) for \(options.epochs) epochs, batch \(options.batchSize), "
        + "lr \(options.learningRate), \(Parallel.threadCount) thread(s)\(ranks) → \(directory?.url.path ?? "-")", communicator)
    let printer = ProgressPrinter(isTerminal: isatty(STDERR_FILENO) != 0) { text in
      FileHandle.standardError.write(Data(text.utf8))
    }
    let epochsBefore = trainer.completedEpochs
    // %.9g round-trips a Float.
    var lossLines: [String] = []
    let summary = try trainer.run(
      in: directory, overwrite: overwrite, stopAfterEpoch: stopAfterEpoch,
      progress: directory == nil ? { _ in } : { event in
        if case .batch(let position) = event { lossLines.append(String(format: "%.9g", position.batchLoss)) }
        printer.handle(event)
      })
    if let stepLosses, directory != nil {
      try AtomicFile.write(Data((lossLines.joined(separator: "\n") + "\n").utf8), to: URL(fileURLWithPath: stepLosses))
    }
    // Ranks other than 0 print nothing.
    guard let directory else { return }
    let outputDirectory = directory.url
    if communicator != nil {
      // An epoch's training time is its samples over its training throughput (evaluation excluded).
      let samplesPerEpoch = Double(data.train.count / options.batchSize * options.batchSize)
      let trainSeconds = trainer.history.suffix(trainer.completedEpochs - epochsBefore).reduce(0.0) {
        $0 + samplesPerEpoch / Swift.max($1.imagesPerSecond, 1e-9)
      }
      status(
        String(
          format: "gradient all-reduce on rank 0: %.2f s of %.2f s training (%.1f%%)", trainer.gradientExchangeSeconds,
          trainSeconds, 100 * trainer.gradientExchangeSeconds / Swift.max(trainSeconds, 1e-9)), communicator)
    }
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

  /// The model config of `--config`, read (at most 1 MiB), strictly parsed and validated; nil without the flag.
  func readConfigFile() throws -> ModelConfig? {
    guard let config else { return nil }
    return try FlagCheck.modelConfig(file: config, "--config")
  }

  /// The model config from --config, --model or the dataset's default model.
  func resolveConfig(configFile: ModelConfig?, datasetName: DatasetName, data: TrainingData) throws -> ModelConfig {
    if let configFile { return configFile }
    return try ModelRegistry.config(
      named: model ?? TrainingRecipe.defaultModel(for: datasetName), classCount: data.train.classCount,
      inputChannels: data.train.sampleShape[2])
  }

  /// The dataset part of the default run name.
  static func shortName(_ dataset: DatasetName) -> String {
    switch dataset {
    case .digits, .fashionMNIST: return dataset.description
    case .idxDirectory(let path), .imageFolder(let path), .numPyArchive(let path):
      return URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    }
  }
}

extension OptimizerKind: ExpressibleByArgument {}
