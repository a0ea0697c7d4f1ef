import ArgumentParser
import Foundation
import QuadraBench
import QuadraCore
import QuadraData
import QuadraIO
import QuadraModels
import QuadraSearch
import QuadraTraining

/// Costs measured on this machine the way the cost profile measures them (``ModelBenchmark`` at the
/// profile's batch size and threads, each in a fresh memory tracker).
struct MeasuredCosts: Codable, Equatable {
  /// Training step time per image, milliseconds.
  var trainMillisecondsPerImage: Double
  /// One batch-1 inference, milliseconds.
  var inferMillisecondsBatch1: Double
  /// Peak bytes of a training step.
  var trainMemoryBytes: Int
  /// Peak bytes of a batch-1 inference pass.
  var inferMemoryBytes: Int

  enum CodingKeys: String, CodingKey {
    case trainMillisecondsPerImage = "train_ms_per_image", inferMillisecondsBatch1 = "infer_ms_batch1"
    case trainMemoryBytes = "train_memory_bytes", inferMemoryBytes = "infer_memory_bytes"
  }

  /// Measures `configs` as the cost profile measures its architectures, in one block of `--rounds` passes,
  /// scaled to the profile's speed level by `reference` (``QuadraSearch/SpeedReference``) and, with a
  /// profile, by `--anchors` of its architectures in every pass
  /// (``QuadraSearch/Profiler/measure(_:anchoredTo:space:anchors:repetitions:minimumSeconds:rounds:reference:progress:)``),
  /// so measured and predicted costs compare, and so do the configs among themselves.
  static func measure(
    _ configs: [ModelConfig], space: SearchSpace, batchSize: Int, threads: Int, cost: SearchCostOptions,
    reference: SpeedReference, profile: CostProfile?
  ) throws -> [MeasuredCosts] {
    let measured: [ConfigMeasurement]
    if let profile {
      measured = try cost.measure(
        configs, anchoredTo: profile, space: space, rounds: cost.rounds, reference: reference, label: "train-best: measuring"
      ).measurements
    } else {
      measured = try Profiler.measure(
        configs, resolution: space.resolution, batchSize: batchSize, threads: threads, repetitions: cost.repetitions,
        minimumSeconds: cost.minSeconds, rounds: cost.rounds, reference: reference
      ) { done, total in
        Terminal.status("train-best: measuring \(configs[(done - 1) % configs.count].name) (\(done)/\(total))…")
      }
    }
    return measured.map { costs in
      MeasuredCosts(
        trainMillisecondsPerImage: 1000 * costs.trainSecondsPerImage,
        inferMillisecondsBatch1: 1000 * costs.inferSecondsBatch1, trainMemoryBytes: costs.trainPeakBytes,
        inferMemoryBytes: costs.inferPeakBytes)
    }
  }
}

/// One architecture `search run --train-best` retrained with the dataset's default recipe.
struct TrainedCandidate: Codable {
  var name: String
  /// Its model config (`quadranet train --config` takes the file of the same name in the output directory).
  var config: ModelConfig
  var proxyScore: Double
  var predicted: PredictedCosts
  /// Nil until every candidate is trained: all are then measured in one block beside the references, so
  /// the ratios compare measurements taken under the same conditions.
  var measured: MeasuredCosts?
  var testAccuracy: Double
  /// Training throughput of the full run (images/s, including data loading and evaluation pauses).
  var trainImagesPerSecond: Double
  /// The run directory (checkpoints, metrics).
  var run: String

  enum CodingKeys: String, CodingKey {
    case name, config, predicted, measured, run
    case proxyScore = "proxy_score", testAccuracy = "test_accuracy", trainImagesPerSecond = "train_images_per_second"
  }
}

/// A registered model named by `--faster-than` / `--memory-below`, measured beside the candidates.
struct ReferenceMeasurement: Codable {
  var model: String
  var predicted: PredictedCosts
  var measured: MeasuredCosts?
}

/// `train-best.json`: the retrained candidates (best proxy first) and the reference models; the printed
/// table adds each candidate's measured speed-up and memory ratio against every reference.
struct TrainBestReport: Codable {
  var candidates: [TrainedCandidate]
  var references: [ReferenceMeasurement]
}

/// `search run --train-best K`: retrains the K best candidates of the Pareto front (by proxy) with the
/// dataset's default recipe and reports measured accuracy, speed and memory beside the predictions.
///
/// Finished candidates are recorded in `train-best.json` (written atomically after each one), so a run
/// resumed after kill -9 skips them; a candidate interrupted mid-training is trained again from scratch.
enum TrainBest {
  static func run(
    state: EvolutionState, costModel: CostModel, profile: CostProfile?, count: Int, dataset: String,
    cost: SearchCostOptions, references: [ModelConfig], to directory: URL
  ) throws {
    let space = state.space
    let (threads, batchSize) = (cost.threadOptions.threads, cost.batchSize)
    let datasetName = try DatasetName(parsing: dataset)
    let splits = try DatasetSplits.load(datasetName)
    let expected = [space.resolution, space.resolution, space.inputChannels]
    guard splits.train.imageShape == expected else {
      throw ValidationError(
        "--train-best: --dataset \(dataset) has images of shape \(splits.train.imageShape); the space \(space.name) is for \(expected)")
    }
    let reportURL = directory.appendingPathComponent("train-best.json")
    var report = TrainBestReport(candidates: [], references: [])
    if FileManager.default.fileExists(atPath: reportURL.path) {
      do {
        report = try JSONDecoder().decode(TrainBestReport.self, from: try BoundedFile.read(reportURL, maximumBytes: 16 << 20))
      } catch {
        throw ValidationError("\(reportURL.path): not a train-best report this version wrote (\(error)); move it away to retrain")
      }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    func save() throws { try AtomicFile.write(try encoder.encode(report), to: reportURL) }

    let chosen = state.front.sorted { $0.score > $1.score }.prefix(count)
    if chosen.count < count {
      Terminal.status("train-best: the Pareto front holds \(chosen.count) candidate(s); training those")
    }
    for (rank, candidate) in chosen.enumerated() {
      var config = try space.config(for: candidate.architecture)
      config.classCount = splits.train.classCount
      if report.candidates.contains(where: { $0.config == config }) {
        Terminal.status("train-best \(rank + 1)/\(chosen.count): \(config.name) already trained, kept")
        continue
      }
      try AtomicFile.write(try encoder.encode(config), to: directory.appendingPathComponent("train-best-\(rank + 1).json"))
      let options = TrainingRecipe.defaultOptions(for: datasetName)
      try options.validate()
      let runURL = directory.appendingPathComponent("train-best-runs").appendingPathComponent(config.name)
      Terminal.status(
        "train-best \(rank + 1)/\(chosen.count): training \(config.name) for \(options.epochs) epochs (the \(datasetName) recipe) → \(runURL.path)")
      let printer = ProgressPrinter(isTerminal: isatty(STDERR_FILENO) != 0) { text in
        FileHandle.standardError.write(Data(text.utf8))
      }
      let summary = try ComputeContext.current.with(threads: threads).run {
        let trainer = try Trainer(
          model: try VisionModel(config: config, seed: options.seed), splits: splits, dataset: datasetName.description,
          options: options)
        return try trainer.run(outputDirectory: runURL, overwrite: true) { printer.handle($0) }
      }
      report.candidates.append(
        TrainedCandidate(
          name: config.name, config: config, proxyScore: candidate.score,
          predicted: try costModel.predict(config, resolution: space.resolution), measured: nil,
          testAccuracy: summary.testAccuracy, trainImagesPerSecond: summary.imagesPerSecond, run: runURL.path))
      try save()
    }

    // Measure what is not measured yet, references and candidates in one block (same machine state).
    for var reference in references where !report.references.contains(where: { $0.model == reference.name }) {
      reference.classCount = space.classCount
      report.references.append(
        ReferenceMeasurement(
          model: reference.name, predicted: try costModel.predict(reference, resolution: space.resolution), measured: nil))
    }
    let unmeasured = report.references.contains { $0.measured == nil } || report.candidates.contains { $0.measured == nil }
    if unmeasured {
      let references = try report.references.map { reference in
        var config = try ModelRegistry.config(named: reference.model)
        config.classCount = space.classCount
        return config
      }
      let speed = try SpeedReference(space: space, batchSize: batchSize, threads: threads, baseline: profile?.speedBaseline)
      let measured = try MeasuredCosts.measure(
        references + report.candidates.map(\.config), space: space, batchSize: batchSize, threads: threads, cost: cost,
        reference: speed, profile: profile)
      for index in report.references.indices { report.references[index].measured = measured[index] }
      for index in report.candidates.indices {
        report.candidates[index].measured = measured[references.count + index]
      }
      try save()
    }
    print(table(report))
    print("wrote \(reportURL.path)")
  }

  /// The report as a table: accuracy, predicted and measured costs, and ratios to each reference.
  static func table(_ report: TrainBestReport) -> String {
    var lines = [
      "architecture                          accuracy  train ms/img pred/meas   train MiB pred/meas   "
        + report.references.map { "vs \($0.model) (speed, memory)" }.joined(separator: "  ")
    ]
    func row(_ name: String, accuracy: String, predicted: PredictedCosts, measured optionalMeasured: MeasuredCosts?) -> String {
      let measured = optionalMeasured ?? MeasuredCosts(trainMillisecondsPerImage: .nan, inferMillisecondsBatch1: .nan, trainMemoryBytes: 0, inferMemoryBytes: 0)
      let ratios = report.references.map { reference in
        guard let referenceCosts = reference.measured, optionalMeasured != nil else { return "-" }
        return String(
          format: "%.2fx, %.2fx", referenceCosts.trainMillisecondsPerImage / measured.trainMillisecondsPerImage,
          Double(measured.trainMemoryBytes) / Double(referenceCosts.trainMemoryBytes))
      }
      return name.padding(toLength: 36, withPad: " ", startingAt: 0) + "  " + accuracy.padding(toLength: 8, withPad: " ", startingAt: 0)
        + String(
          format: "  %8.4g / %-8.4g      %7.1f / %-7.1f    ", predicted.trainMillisecondsPerImage, measured.trainMillisecondsPerImage,
          Double(predicted.trainMemoryBytes) / 1_048_576, Double(measured.trainMemoryBytes) / 1_048_576)
        + ratios.joined(separator: "      ")
    }
    for candidate in report.candidates {
      lines.append(
        row(candidate.name, accuracy: String(format: "%.2f%%", 100 * candidate.testAccuracy), predicted: candidate.predicted,
          measured: candidate.measured))
    }
    for reference in report.references {
      lines.append(row(reference.model + " (reference)", accuracy: "-", predicted: reference.predicted, measured: reference.measured))
    }
    return lines.joined(separator: "\n")
  }
}
