import ArgumentParser
import Foundation
import QuadraData

/// `quadranet bench data`: images per second of the streaming loader on an image folder, per format.
struct DataBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "data",
    abstract: "Decode + augment throughput of the streaming loader on an image folder's training images (PNG and JPEG separately).")

  @Option(help: "An image folder (DIR/train/<class>/… and DIR/test/<class>/…, or DIR/<class>/… with --test-fraction).")
  var dataset: String
  @OptionGroup var datasetOptions: DatasetOptions
  @Option(parsing: .unconditional, help: "Images timed per format, 1...1000000 (default 512).") var images: Int = 512
  @Option(parsing: .unconditional, help: "Batch size of the loader, 1...65536 (default 32).") var batchSize: Int = 32
  @Option(help: "Augmentation timed: rrc, pad-crop (1 pixel) or none (default rrc).") var augment: String = "rrc"
  @Flag(help: "Print one JSON array instead of lines.") var json = false

  func validate() throws {
    try FlagCheck.integer(images, in: DataBenchmark.imageCountRange, "--images")
    try FlagCheck.integer(batchSize, in: 1...65_536, "--batch-size")
    guard AugmentationKind(rawValue: augment.lowercased()) != nil else {
      throw ValidationError("--augment must be rrc, pad-crop or none, got '\(augment.prefix(32))'")
    }
  }

  func run() throws {
    try Terminal.withReadableFileErrors {
      guard case .imageFolder(let path) = try DatasetName(parsing: dataset) else {
        throw ValidationError("--dataset must be an image folder, got '\(dataset)'")
      }
      let streams = try DatasetSplits.imageFolderStreams(
        URL(fileURLWithPath: path), options: datasetOptions.folderOptions(), notes: { Terminal.status("note: \($0)") })
      let augmentation: Augmentation
      switch AugmentationKind(rawValue: augment.lowercased())! {
      case .randomResizedCrop: augmentation = .randomResizedCropAndFlip
      case .padCrop: augmentation = Augmentation(padding: 1, horizontalFlip: true)
      case .none: augmentation = .none
      }
      let results = try DataBenchmark.run(
        streams.train, loader: LoaderOptions(workers: datasetOptions.workers, prefetch: datasetOptions.prefetch),
        batchSize: batchSize, images: images, augmentation: augmentation) { line in
          if json { Terminal.status(line) } else { print(line) }
        }
      if json { try Terminal.printJSON(results) }
    }
  }
}
