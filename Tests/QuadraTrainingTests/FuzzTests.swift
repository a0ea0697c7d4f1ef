import Foundation
import QuadraIO
import Testing

@testable import QuadraData
@testable import QuadraModels
@testable import QuadraTraining

/// Every parser of untrusted input, run on thousands of deterministic mutants of a valid input.
/// Each mutant must be accepted or rejected with a thrown error: a trap or abort would kill the test
/// process (the suite is the oracle), a hang would stall it. Sizes are bounded so nothing allocates much.
@Suite struct FuzzTests {
  static let configJSON: [UInt8] = {
    var config = Tiny.horNet
    config.weightInitialization = .fanInScaled(gain: 1)
    config.stemKernelSize = 3
    return Array(WeightsCheckpoint.json(config).utf8)
  }()

  @Test func configJSON() {
    var valid = 0
    let counts = fuzz(Self.configJSON, count: 4000, seed: 1) { mutant in
      let config = try ModelConfig.decodeJSON(Data(mutant))
      // Whatever decodes and validates must be cheap to reason about: sizes in range, no overflow.
      #expect(config.parameterCount > 0 && config.parameterCount < Int.max)
      #expect(config.macs(resolution: config.minimumResolution) >= 0)
      valid += 1
    }
    #expect(counts.rejected > 2000, "most mutants must be rejected, \(counts)")
    #expect(valid == counts.accepted)
  }

  @Test func strictJSONOnArbitraryDocuments() {
    let document = Array(#"{"a":[1,2.5e3,-0.1,true,false,null,"x\u00e9\ud83d\ude00\n"],"b":{"c":{}},"d":[]}"#.utf8)
    let counts = fuzz(document, count: 5000, seed: 2) { mutant in
      try StrictJSON.validate(Data(mutant))
    }
    #expect(counts.rejected > 0 && counts.accepted > 0, "\(counts)")
  }

  @Test func safetensorsDecoding() throws {
    let tensors = [
      "a": Tensor(shape: [2, 3], scalars: (0..<6).map(Float.init)), "b": Tensor(shape: [4], scalars: [1, 2, 3, 4]),
      "empty": Tensor(zeros: [0, 5]),
    ]
    let file = try Safetensors.encode(tensors, metadata: ["config": "{\"x\":1}", "epoch": "3"])
    let counts = fuzz(Array(file), count: 5000, seed: 3) { mutant in
      _ = try Safetensors.decode(Data(mutant))
    }
    #expect(counts.rejected > 2500, "\(counts)")
  }

  /// A tiny IDX image file (3 images of 4×5) and its gzip form.
  static let idx = IDX.encode(IDXArray(dimensions: [3, 4, 5], bytes: (0..<60).map { UInt8($0) }))

  @Test func rawIDX() {
    let counts = fuzz(Array(Self.idx), count: 5000, seed: 4) { mutant in
      _ = try IDX.parse(Data(mutant), path: "mutant.idx")
    }
    #expect(counts.rejected > 2500, "\(counts)")
  }

  @Test func gzippedIDX() throws {
    let gzipped = try Gzip.compress(Self.idx)
    var mutator = Mutator(seed: 5)
    var rejected = 0
    for round in 0..<4000 {
      // Half mutate the compressed bytes, half the IDX inside (header dimensions vs payload).
      let mutant: Data
      if round % 2 == 0 {
        mutant = Data(mutator.mutate(Array(gzipped)))
      } else {
        mutant = try Gzip.compress(Data(mutator.mutate(Array(Self.idx))), level: 1)
      }
      do {
        _ = try IDX.decode(mutant, path: "mutant-idx3-ubyte.gz")
      } catch {
        rejected += 1
      }
    }
    #expect(rejected > 2000)
  }

  static let splits = Result { try Tiny.digits(trainCount: 32, testCount: 16) }

  /// The checkpoint of a fresh run of a tiny model (one epoch planned), written to `directory`.
  static func writeCheckpoint(to directory: URL) throws -> TrainingCheckpoint {
    var options = Tiny.options
    options.epochs = 1
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: try splits.get(), dataset: "digits",
      options: options)
    let checkpoint = trainer.checkpoint()
    try checkpoint.write(to: directory)
    return checkpoint
  }

  /// The training-state file that `TrainingCheckpoint.read(from: directory)` reads: the newest committed save's
  /// (the top-level file is only a published link to it).
  static func stateFileURL(in directory: URL) throws -> URL {
    let save = try #require(RunDirectory.committedSaves(in: directory).last, "no committed save in \(directory.path)")
    return save.url.appendingPathComponent(CheckpointFiles.trainingState)
  }

  static func writeState(json: String, tensors: [String: Tensor], epoch: Int, step: Int, to directory: URL) throws {
    let metadata = [
      CheckpointFiles.Key.format: TrainingCheckpoint.formatName, CheckpointFiles.Key.trainingState: json,
      CheckpointFiles.Key.epoch: String(epoch), CheckpointFiles.Key.globalStep: String(step),
    ]
    try Safetensors.write(tensors, metadata: metadata, to: try stateFileURL(in: directory))
  }

  @Test func trainingStateJSON() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    var checkpoint = try Self.writeCheckpoint(to: directory)
    let json = Array(WeightsCheckpoint.json(checkpoint.state).utf8)
    let counts = fuzz(json, count: 2000, seed: 6) { mutant in
      checkpoint.state = try TrainingState.decode(json: String(decoding: mutant, as: UTF8.self))
      // What decodes must also resume and train without trapping.
      let trainer = try Trainer(resuming: checkpoint, splits: try Self.splits.get(), dataset: "digits")
      try trainer.run(outputDirectory: nil, stopAfterEpoch: checkpoint.state.epoch + 1)
    }
    // Some mutants (seeds, generator words, timings) are valid states: the resume path runs too.
    #expect(counts.rejected > 1000 && counts.accepted > 20, "\(counts)")
  }

  @Test func trainingStateFile() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    _ = try Self.writeCheckpoint(to: directory)
    let stateURL = try Self.stateFileURL(in: directory)
    let valid = try Data(contentsOf: stateURL)
    let counts = fuzz(Array(valid), count: 1000, seed: 7) { mutant in
      try Data(mutant).write(to: stateURL)
      _ = try TrainingCheckpoint.read(from: directory)
    }
    #expect(counts.rejected > 500, "\(counts)")
  }
}
