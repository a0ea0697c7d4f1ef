import Foundation

/// Streaming-loader throughput on one image format of a folder.
public struct DataBenchmarkResult: Codable, Sendable, Equatable {
  /// "png" or "jpeg".
  public var format: String
  /// Files of this format in the folder's training split.
  public var files: Int
  public var workers: Int
  /// Images decoded, augmented and batched while timing.
  public var images: Int
  public var seconds: Double
  public var imagesPerSecond: Double
  /// `imagesPerSecond / max(workers, 1)`.
  public var imagesPerSecondPerWorker: Double
  /// `[H, W, C]` of the produced samples.
  public var sampleShape: [Int]

  enum CodingKeys: String, CodingKey {
    case format, files, workers, images, seconds
    case imagesPerSecond = "images_per_second"
    case imagesPerSecondPerWorker = "images_per_second_per_worker"
    case sampleShape = "sample_shape"
  }
}

/// Measures how many images per second a ``StreamingBatchLoader`` delivers from an image folder, per format.
///
/// The timed work is the training pipeline itself: read the file, decode it (PNG in Swift, JPEG through
/// libturbojpeg), apply the training augmentation, normalize, assemble batches in order. One batch is
/// produced before timing starts (thread start-up, file cache). With 0 workers the calling thread decodes.
public enum DataBenchmark {
  /// The formats measured and their file extensions.
  public static let formats: [(name: String, extensions: Set<String>)] = [("png", ["png"]), ("jpeg", ["jpg", "jpeg"])]
  /// Accepted image counts per measurement.
  public static let imageCountRange = 1...1_000_000

  public static func run(
    _ dataset: ImageFolderDataset, loader: LoaderOptions, batchSize: Int = 32, images: Int = 512,
    augmentation: Augmentation = .randomResizedCropAndFlip, progress: (String) -> Void = { _ in }
  ) throws -> [DataBenchmarkResult] {
    try loader.validate()
    guard imageCountRange.contains(images) else {
      throw DatasetError.invalidLoader("image count \(images) is outside \(imageCountRange.lowerBound)...\(imageCountRange.upperBound)")
    }
    var results: [DataBenchmarkResult] = []
    for format in formats {
      let indices = dataset.files.indices.filter { format.extensions.contains(dataset.files[$0].pathExtension.lowercased()) }
      guard !indices.isEmpty else { continue }
      let subset = dataset.subset(indices)
      let batches = try StreamingBatchLoader(
        dataset: subset, batchSize: Swift.min(batchSize, subset.count), augmentation: augmentation, loader: loader, seed: 0)
      defer { batches.cancel() }
      _ = try batches.next()
      let start = DispatchTime.now().uptimeNanoseconds
      var produced = 0
      while produced < images {
        // nil ends an epoch; the next call starts the next one.
        if let batch = try batches.next() { produced += batch.count }
      }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      let rate = Double(produced) / Swift.max(seconds, 1e-9)
      let result = DataBenchmarkResult(
        format: format.name, files: subset.count, workers: loader.workers, images: produced, seconds: seconds,
        imagesPerSecond: rate, imagesPerSecondPerWorker: rate / Double(Swift.max(loader.workers, 1)),
        sampleShape: subset.sampleShape)
      progress(
        String(
          format: "%@: %d images in %.2f s with %d worker(s): %.0f images/s, %.0f per worker", format.name, produced,
          seconds, loader.workers, rate, result.imagesPerSecondPerWorker))
      results.append(result)
    }
    guard !results.isEmpty else {
      throw DatasetError.invalidFolder(
        path: dataset.name, reason: "its training split has no .png, .jpg or .jpeg files to measure")
    }
    return results
  }
}
