import Foundation

/// Why a dataset could not be loaded. Every message names the file (or dataset) and the problem.
public enum DatasetError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// A file that should exist does not.
  case fileNotFound(path: String)
  /// A file could not be read (permissions, I/O error).
  case unreadable(path: String, reason: String)
  /// A `.gz` file could not be decompressed.
  case corruptGzip(path: String, reason: String)
  /// The IDX magic number is not `00 00 <type> <rank>`.
  case badMagic(path: String, bytes: [UInt8])
  /// The IDX element type is not `0x08` (unsigned byte).
  case unsupportedDataType(path: String, code: UInt8)
  /// The IDX array has the wrong number of dimensions (labels are 1-D, images 3-D).
  case unexpectedRank(path: String, expected: Int, dimensions: [Int])
  /// The file ends before the payload its header announces.
  case truncated(path: String, expectedBytes: Int, foundBytes: Int)
  /// The IDX header announces an unsupported or implausible size, or the data disagrees with it.
  case invalidHeader(path: String, reason: String)
  /// The file has bytes after the payload its header announces.
  case trailingBytes(path: String, expectedBytes: Int, foundBytes: Int)
  /// A label is outside `0..<classCount`.
  case labelOutOfRange(path: String, label: Int, classCount: Int, index: Int)
  /// The images and labels files disagree on the number of samples.
  case countMismatch(imagesPath: String, imageCount: Int, labelsPath: String, labelCount: Int)
  /// A line of a CSV dataset is malformed.
  case invalidCSV(path: String, line: Int, reason: String)
  /// None of the accepted file names for a part of an IDX dataset exists in the directory.
  case missingIDXFile(directory: String, tried: [String])
  /// A system dataset package is not installed.
  case notInstalled(dataset: String, directory: String, package: String)
  /// A dataset resource is missing from the module bundle.
  case missingResource(name: String)
  /// A dataset name is neither a known dataset nor a path.
  case unknownDataset(name: String)
  /// A requested split does not fit the data.
  case invalidSplit(String)
  /// A data-loading option (worker count, prefetch depth, augmentation) is invalid, or the loader failed.
  case invalidLoader(String)
  /// An image-folder dataset (or one of its folders or files) does not have the expected form.
  case invalidFolder(path: String, reason: String)
  /// An array of a `.npz` dataset is missing or has the wrong type or shape.
  case invalidArchive(path: String, array: String, reason: String)

  public var description: String {
    switch self {
    case .fileNotFound(let path):
      return "\(path): file not found"
    case .unreadable(let path, let reason):
      return "\(path): cannot read file (\(reason))"
    case .corruptGzip(let path, let reason):
      return "\(path): \(reason)"
    case .badMagic(let path, let bytes):
      let hex = bytes.map { String(format: "%02x", $0) }.joined(separator: " ")
      return "\(path): bad magic number [\(hex)]; an IDX file starts with 00 00 <type> <rank> (or 1f 8b if gzipped)"
    case .unsupportedDataType(let path, let code):
      return "\(path): unsupported IDX element type 0x\(String(format: "%02X", code)); only 0x08 (unsigned byte) is supported"
    case .unexpectedRank(let path, let expected, let dimensions):
      return "\(path): expected a \(expected)-D IDX array, found \(dimensions.count)-D with dimensions \(dimensions)"
    case .truncated(let path, let expected, let found):
      return "\(path): truncated: expected \(expected) bytes, found \(found)"
    case .invalidHeader(let path, let reason):
      return "\(path): \(reason)"
    case .trailingBytes(let path, let expected, let found):
      return "\(path): expected \(expected) bytes, found \(found) (\(found - expected) unexpected trailing bytes)"
    case .labelOutOfRange(let path, let label, let classCount, let index):
      return "\(path): label \(label) out of range 0..<\(classCount) at index \(index)"
    case .countMismatch(let imagesPath, let imageCount, let labelsPath, let labelCount):
      return "image/label count mismatch: \(imagesPath) has \(imageCount) images but \(labelsPath) has \(labelCount) labels"
    case .invalidCSV(let path, let line, let reason):
      return "\(path): line \(line): \(reason)"
    case .missingIDXFile(let directory, let tried):
      return "\(directory): none of \(tried.joined(separator: ", ")) exists"
    case .notInstalled(let dataset, let directory, let package):
      return "\(dataset) not found at \(directory). It comes from the Debian/Ubuntu package '\(package)': "
        + "run `apt-get update && apt-get install -y \(package)` (as root), "
        + "or pass the path of a directory with the IDX files instead."
    case .missingResource(let name):
      return "resource \(name) is missing from the QuadraData bundle"
    case .unknownDataset(let name):
      return "unknown dataset '\(name)': use 'digits', 'fashion-mnist', the path of a directory with MNIST-style IDX files or with one folder of images per class, or a .npz file"
    case .invalidSplit(let reason):
      return "invalid split: \(reason)"
    case .invalidLoader(let reason):
      return "data loader: \(reason)"
    case .invalidFolder(let path, let reason):
      return "\(path): \(reason)"
    case .invalidArchive(let path, let array, let reason):
      return "\(path): array '\(array)': \(reason)"
    }
  }

  public var errorDescription: String? { description }
}
