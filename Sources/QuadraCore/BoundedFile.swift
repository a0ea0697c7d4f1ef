import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A file that cannot be read within bounds: missing, not a regular file, or larger than allowed.
public struct BoundedFileError: Error, Equatable, CustomStringConvertible, LocalizedError {
  public var path: String
  public var reason: String

  public var description: String { "\(path): \(reason)" }
  public var errorDescription: String? { description }
}

/// Reads input files with a size bound checked *before* reading.
///
/// `Data(contentsOf:)` reads special files such as `/dev/zero` or a FIFO until they end, i.e. forever
/// or until memory runs out; these helpers accept only regular files (after following symlinks)
/// whose size is within the bound.
public enum BoundedFile {
  /// The size of the regular file at `path` (symlinks followed); throws for anything else.
  public static func regularFileSize(_ path: String) throws -> Int {
    var info = stat()
    guard stat(path, &info) == 0 else {
      throw BoundedFileError(path: path, reason: String(cString: strerror(errno)))
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
      throw BoundedFileError(path: path, reason: "not a regular file")
    }
    return Int(info.st_size)
  }

  /// The contents of the regular file at `url`, memory-mapped when possible, if it has at most `maximumBytes`.
  public static func read(_ url: URL, maximumBytes: Int) throws -> Data {
    let size = try regularFileSize(url.path)
    guard size <= maximumBytes else {
      throw BoundedFileError(path: url.path, reason: "the file has \(size) bytes; at most \(maximumBytes) are accepted")
    }
    do {
      return try Data(contentsOf: url, options: .mappedIfSafe)
    } catch {
      throw BoundedFileError(path: url.path, reason: "cannot read the file (\(error.localizedDescription))")
    }
  }
}
