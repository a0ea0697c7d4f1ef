import ArgumentParser
import Foundation
import QuadraData

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

  func validate() throws {
    try FlagCheck.integer(classes, in: DatasetSplits.classCountRange, "--classes")
    try FlagCheck.integer(resolution, in: ImageFolderOptions.resolutionRange, "--resolution")
    if let testFraction, !(testFraction.isFinite && testFraction > 0 && testFraction < 1) {
      throw ValidationError("--test-fraction must be a finite number in (0, 1), got \(testFraction)")
    }
    if let layout, ArrayLayout(rawValue: layout.lowercased()) == nil {
      throw ValidationError("--layout must be nhwc or nchw, got '\(layout)'")
    }
  }

  /// Loads `name` with these flags; `savedClassCount` (a checkpoint's) applies when `--classes` is absent.
  /// `seed` (`--seed`) chooses the `--test-fraction` split of image folders; the other datasets keep
  /// their fixed splits, so their test sets do not change with the training seed.
  func load(_ name: DatasetName, savedClassCount: Int? = nil, splitSeed seed: UInt64 = 0) throws -> DatasetSplits {
    var splitSeed: UInt64 = 0
    if case .imageFolder = name { splitSeed = seed }
    return try DatasetSplits.load(
      name, splitSeed: splitSeed, classCount: classes ?? savedClassCount,
      folder: ImageFolderOptions(resolution: resolution, testFraction: testFraction),
      layout: layout.flatMap { ArrayLayout(rawValue: $0.lowercased()) },
      notes: { Terminal.status("note: \($0)") })
  }
}
