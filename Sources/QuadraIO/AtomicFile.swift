import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A file-system operation that failed, with the path and the system's reason.
public struct FileWriteError: Error, Equatable, CustomStringConvertible, LocalizedError {
  public var path: String
  public var operation: String
  public var reason: String

  public init(path: String, operation: String, reason: String) {
    self.path = path
    self.operation = operation
    self.reason = reason
  }

  /// An error from the current `errno`.
  static func posix(_ path: String, _ operation: String, _ code: Int32 = errno) -> FileWriteError {
    FileWriteError(path: path, operation: operation, reason: String(cString: strerror(code)))
  }

  public var description: String { "\(path): \(operation) failed: \(reason)" }
  public var errorDescription: String? { description }
}

/// Whole-file writes that never leave a partial file behind.
public enum AtomicFile {
  /// Writes `data` to `url` atomically.
  ///
  /// The bytes go to a temporary file in the same directory (so the rename stays on one file
  /// system), which is flushed to disk and then renamed over `url`. A reader therefore sees
  /// either the old file or the complete new one, even if the process dies midway; on any
  /// error the temporary file is removed and an existing file at `url` is left untouched.
  /// An existing file's permissions are kept.
  public static func write(_ data: Data, to url: URL) throws {
    let path = url.path
    let directory = url.deletingLastPathComponent().path
    let temporary = url.deletingLastPathComponent()
      .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path

    var mode: mode_t = 0o644
    var existing = stat()
    if stat(path, &existing) == 0 { mode = existing.st_mode & 0o7777 }

    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else { throw FileWriteError.posix(path, "creating a temporary file in \(directory)") }
    var committed = false
    defer { if !committed { unlink(temporary) } }
    do {
      defer { close(fd) }
      try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
        var offset = 0
        while offset < bytes.count {
          let written = systemWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
          if written < 0 {
            if errno == EINTR { continue }
            throw FileWriteError.posix(path, "writing \(bytes.count) bytes")
          }
          offset += written
        }
      }
      // umask may have narrowed the mode given to open; match the file being replaced.
      _ = fchmod(fd, mode)
      guard fsync(fd) == 0 else { throw FileWriteError.posix(path, "flushing to disk") }
    }
    guard rename(temporary, path) == 0 else { throw FileWriteError.posix(path, "renaming the temporary file") }
    committed = true
    // Persist the directory entry too; failure here cannot corrupt the file, so it is ignored.
    let directoryFD = open(directory, O_RDONLY | O_CLOEXEC)
    if directoryFD >= 0 {
      _ = fsync(directoryFD)
      close(directoryFD)
    }
  }

  /// Writes a UTF-8 string atomically.
  public static func write(_ string: String, to url: URL) throws {
    try write(Data(string.utf8), to: url)
  }
}

/// `write(2)`, named apart from the ``AtomicFile/write(_:to:)`` overloads.
@inline(__always)
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
  #if canImport(Darwin)
    return Darwin.write(fd, buffer, count)
  #elseif canImport(Musl)
    return Musl.write(fd, buffer, count)
  #else
    return Glibc.write(fd, buffer, count)
  #endif
}
