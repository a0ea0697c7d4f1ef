import Foundation

/// The data options of a training run that evaluation and prediction must repeat: recorded in the
/// checkpoint (metadata key `data_options`) so `eval` and `predict` prepare inputs as training did.
public struct DataOptions: Codable, Sendable, Equatable {
  /// `--resolution` of image folders (nil: the images' own size).
  public var resolution: Int?
  /// `--test-fraction` of image folders without `train/` and `test/` (the held-out split `eval` measures).
  public var testFraction: Double?
  /// `--layout` of `.npz` images, "nhwc" or "nchw" (nil: inferred).
  public var layout: String?
  /// The training augmentation (informative: evaluation never augments).
  public var augmentation: AugmentationKind?

  public init(resolution: Int? = nil, testFraction: Double? = nil, layout: String? = nil, augmentation: AugmentationKind? = nil) {
    self.resolution = resolution
    self.testFraction = testFraction
    self.layout = layout
    self.augmentation = augmentation
  }

  enum CodingKeys: String, CodingKey {
    case resolution
    case testFraction = "test_fraction"
    case layout
    case augmentation
  }

  /// Throws when a value is outside what the flags accept, naming the field and its range.
  public func validate() throws {
    if let resolution, !ImageFolderOptions.resolutionRange.contains(resolution) {
      let range = ImageFolderOptions.resolutionRange
      throw DatasetError.invalidLoader("resolution \(resolution) is outside \(range.lowerBound)...\(range.upperBound)")
    }
    if let testFraction, !(testFraction.isFinite && testFraction > 0 && testFraction < 1) {
      throw DatasetError.invalidLoader("test_fraction \(testFraction) is outside (0, 1)")
    }
    if let layout, ArrayLayout(rawValue: layout) == nil {
      throw DatasetError.invalidLoader("layout '\(layout.prefix(16))' is not nhwc or nchw")
    }
  }

  /// The folder options these values imply.
  public var folderOptions: ImageFolderOptions { ImageFolderOptions(resolution: resolution, testFraction: testFraction) }
}
