import ArgumentParser
import Foundation
import QuadraData
import QuadraTraining

/// The dataset flags of `train` and `eval`: class count, image-folder size and split, `.npz` layout.
struct DatasetOptions: ParsableArguments {
  @Option(
    parsing: .unconditional,
    help: """
      Classes of the model head, 1...100000 (default: the data's: 10 for digits and fashion-mnist, the \
      largest label + 1 for IDX and .npz data, the class folders of an image folder; the checkpoint's when \
      resuming or evaluating). Every label must lie below it.
      """)
  var classes: Int?
  @Option(
    parsing: .unconditional,
    help: """
      Image folders: side of the square input, 8...4096 (default: the images' size, which must then be \
      the same for all). Training images: shorter side resized to R, centre crop; test images: shorter side \
      to R/0.875, centre crop (bilinear).
      """)
  var resolution: Int?
  @Option(
    parsing: .unconditional,
    help: "Image folders without train/ and test/: fraction of each class held out as the test set, in (0, 1), seeded by --seed.")
  var testFraction: Double?
  @Option(help: "Axis order of rank-4 .npz images: nhwc or nchw (default: inferred when only one of axes 1 and 3 has size 1, 3 or 4).")
  var layout: String?
  @Option(
    parsing: .unconditional,
    help: """
      Image folders: background threads that decode and augment the next batches, 0...64 (0: decode on the \
      training thread; default 2). Results do not depend on it.
      """)
  var workers: Int = 2
  @Option(parsing: .unconditional, help: "Image folders: batches decoded ahead of training, 1...64 (default 2).")
  var prefetch: Int = 2
  @Flag(
    help: """
      Image folders: decode every image up front and hold the dataset in memory instead of streaming it from \
      disk (faster epochs for small folders; augmentation then works on the --resolution images).
      """)
  var inMemory = false

  func validate() throws {
    try FlagCheck.integer(classes, in: DatasetSplits.classCountRange, "--classes")
    try FlagCheck.integer(resolution, in: ImageFolderOptions.resolutionRange, "--resolution")
    if let testFraction, !(testFraction.isFinite && testFraction > 0 && testFraction < 1) {
      throw ValidationError("--test-fraction must be a finite number in (0, 1), got \(testFraction)")
    }
    try FlagCheck.integer(workers, in: LoaderOptions.workerRange, "--workers")
    try FlagCheck.integer(prefetch, in: LoaderOptions.prefetchRange, "--prefetch")
    if let layout, ArrayLayout(rawValue: layout.lowercased()) == nil {
      throw ValidationError("--layout must be nhwc or nchw, got '\(layout)'")
    }
  }

  /// Loads `name` with these flags; `savedClassCount` (a checkpoint's) applies when `--classes` is absent.
  /// `seed` (`--seed`) chooses the `--test-fraction` split of image folders; the other datasets keep
  /// their fixed splits, so their test sets do not change with the training seed.
  func load(
    _ name: DatasetName, savedClassCount: Int? = nil, splitSeed seed: UInt64 = 0, saved: DataOptions? = nil
  ) throws -> DatasetSplits {
    var splitSeed: UInt64 = 0
    if case .imageFolder = name { splitSeed = seed }
    return try DatasetSplits.load(
      name, splitSeed: splitSeed, classCount: classes ?? savedClassCount, folder: folderOptions(saved: saved),
      layout: (layout ?? saved?.layout).flatMap { ArrayLayout(rawValue: $0.lowercased()) },
      notes: { Terminal.status("note: \($0)") })
  }

  /// The folder options of these flags (`saved`, a checkpoint's, fills in what the flags leave out).
  func folderOptions(saved: DataOptions? = nil) -> ImageFolderOptions {
    ImageFolderOptions(resolution: resolution ?? saved?.resolution, testFraction: testFraction ?? saved?.testFraction)
  }

  /// The training data of `name`: an image folder streamed from disk (unless `--in-memory`), any other
  /// dataset in memory; `saved` (a checkpoint's data options) supplies --resolution, --test-fraction and
  /// --layout when they are not given.
  func loadTrainingData(
    _ name: DatasetName, savedClassCount: Int? = nil, splitSeed seed: UInt64 = 0, saved: DataOptions? = nil
  ) throws -> TrainingData {
    let loader = LoaderOptions(workers: workers, prefetch: prefetch)
    if case .imageFolder(let path) = name, !inMemory {
      let streams = try DatasetSplits.imageFolderStreams(
        URL(fileURLWithPath: path), options: folderOptions(saved: saved), splitSeed: seed,
        classCount: classes ?? savedClassCount, notes: { Terminal.status("note: \($0)") })
      return TrainingData(streaming: streams, loader: loader)
    }
    return TrainingData(
      try load(name, savedClassCount: savedClassCount, splitSeed: seed, saved: saved), loader: loader)
  }

  /// The data options a checkpoint records, so `eval` and `predict` prepare inputs as training did.
  func dataOptions(augmentation: Augmentation, saved: DataOptions? = nil) -> DataOptions {
    DataOptions(
      resolution: resolution ?? saved?.resolution, testFraction: testFraction ?? saved?.testFraction,
      layout: (layout ?? saved?.layout)?.lowercased(), augmentation: augmentation.kind)
  }
}
