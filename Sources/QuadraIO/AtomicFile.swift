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

extension FileWriteError {
  /// A Foundation file error (`NSCocoaErrorDomain` or `NSPOSIXErrorDomain`, as `FileManager` and
  /// `Data(contentsOf:)` throw them) as "PATH: OPERATION failed: reason"; nil for any other error.
  ///
  /// Foundation's own text on Linux is a dump of the `NSError` (domain, code, user info); this names the
  /// file and the system's reason instead. `path` is used when the error does not carry one.
  public init?(foundationError error: Error, path fallbackPath: String, operation: String) {
    let nsError = error as NSError
    let path = (nsError.userInfo[NSFilePathErrorKey] as? String)
      ?? (nsError.userInfo[NSURLErrorKey] as? URL)?.path ?? fallbackPath
    if nsError.domain == NSPOSIXErrorDomain {
      self.init(path: path, operation: operation, reason: String(cString: strerror(Int32(nsError.code))))
      return
    }
    guard nsError.domain == NSCocoaErrorDomain else { return nil }
    if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
      self.init(path: path, operation: operation, reason: String(cString: strerror(Int32(underlying.code))))
      return
    }
    let reason: String
    switch CocoaError.Code(rawValue: nsError.code) {
    case .fileNoSuchFile, .fileReadNoSuchFile: reason = String(cString: strerror(ENOENT))
    case .fileReadNoPermission, .fileWriteNoPermission: reason = String(cString: strerror(EACCES))
    case .fileWriteVolumeReadOnly: reason = String(cString: strerror(EROFS))
    case .fileWriteOutOfSpace: reason = String(cString: strerror(ENOSPC))
    case .fileWriteFileExists: reason = String(cString: strerror(EEXIST))
    case .fileReadTooLarge: reason = "the file is too large"
    case .fileReadCorruptFile, .fileReadInapplicableStringEncoding: reason = "the file is not in the expected format"
    default: reason = "error \(nsError.code)"
    }
    self.init(path: path, operation: operation, reason: reason)
  }
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

/// One mutating file-system step of a ``DurableFileSystem``, as a fault-injection hook sees it.
public enum FileOperation: Sendable, Equatable, CustomStringConvertible {
  case createDirectory(String)
  /// Creating an empty file (it does not exist before).
  case createFile(String)
  /// Writing bytes `range` of a file's contents (a file is written in two parts, so a torn file can be simulated).
  case write(String, range: Range<Int>)
  /// `fsync` of a file's data.
  case syncFile(String)
  /// `fsync` of a directory, which makes the entries created, renamed or removed in it durable.
  case syncDirectory(String)
  case rename(from: String, to: String)
  /// A hard link `to` of the existing file `from`.
  case link(from: String, to: String)
  case removeFile(String)
  case removeDirectory(String)

  public var description: String {
    switch self {
    case .createDirectory(let path): return "mkdir \(path)"
    case .createFile(let path): return "create \(path)"
    case .write(let path, let range): return "write \(path) [\(range.lowerBound), \(range.upperBound))"
    case .syncFile(let path): return "fsync \(path)"
    case .syncDirectory(let path): return "fsync directory \(path)"
    case .rename(let from, let to): return "rename \(from) → \(to)"
    case .link(let from, let to): return "link \(from) → \(to)"
    case .removeFile(let path): return "unlink \(path)"
    case .removeDirectory(let path): return "rmdir \(path)"
    }
  }
}

/// File-system primitives for multi-file commits (e.g. a checkpoint pair): each step is one system call
/// whose result is durable once the matching `fsync` returned.
///
/// Unlike ``AtomicFile``, nothing is cleaned up when a step fails: the caller's protocol must leave a
/// recoverable state after *any* prefix of its steps (a `kill -9` stops at an arbitrary step too), and
/// leftovers are removed at the next start. `beforeOperation` runs before every step; a hook that throws
/// at step k stops the protocol exactly there, which is how tests simulate a crash at every point.
public struct DurableFileSystem: Sendable {
  public var beforeOperation: @Sendable (FileOperation) throws -> Void

  public init(beforeOperation: @escaping @Sendable (FileOperation) throws -> Void = { _ in }) {
    self.beforeOperation = beforeOperation
  }

  /// `mkdir` of one directory (its parent must exist).
  public func createDirectory(_ url: URL) throws {
    try beforeOperation(.createDirectory(url.path))
    guard mkdir(url.path, 0o755) == 0 else { throw FileWriteError.posix(url.path, "creating the directory") }
  }

  /// Creates `url` (which must not exist), writes `data` and flushes it to disk.
  public func writeNewFile(_ data: Data, to url: URL) throws {
    let path = url.path
    try beforeOperation(.createFile(path))
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FileWriteError.posix(path, "creating the file") }
    defer { close(fd) }
    let half = data.count / 2
    for range in [0..<half, half..<data.count] where !range.isEmpty {
      try beforeOperation(.write(path, range: range))
      try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
        var offset = range.lowerBound
        while offset < range.upperBound {
          let written = systemWrite(fd, bytes.baseAddress! + offset, range.upperBound - offset)
          if written < 0 {
            if errno == EINTR { continue }
            throw FileWriteError.posix(path, "writing \(data.count) bytes")
          }
          offset += written
        }
      }
    }
    try beforeOperation(.syncFile(path))
    guard fsync(fd) == 0 else { throw FileWriteError.posix(path, "flushing to disk") }
  }

  /// `fsync` of a directory: entries created, renamed or removed in it survive a power loss.
  public func syncDirectory(_ url: URL) throws {
    try beforeOperation(.syncDirectory(url.path))
    let fd = open(url.path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileWriteError.posix(url.path, "opening the directory to flush it") }
    defer { close(fd) }
    // Some file systems cannot fsync directories (EINVAL); their renames are then as durable as they get.
    guard fsync(fd) == 0 || errno == EINVAL else { throw FileWriteError.posix(url.path, "flushing the directory") }
  }

  /// `rename(2)`: atomically replaces `destination` (a file, or an empty directory by a directory).
  public func rename(_ source: URL, to destination: URL) throws {
    try beforeOperation(.rename(from: source.path, to: destination.path))
    guard systemRename(source.path, destination.path) == 0 else {
      throw FileWriteError.posix(destination.path, "renaming \(source.lastPathComponent) to it")
    }
  }

  /// A hard link `destination` to the file `source`; returns false (without throwing) where the file
  /// system has no hard links, so the caller can copy instead.
  public func link(_ source: URL, to destination: URL) throws -> Bool {
    try beforeOperation(.link(from: source.path, to: destination.path))
    if systemLink(source.path, destination.path) == 0 { return true }
    let code = errno
    if code == EPERM || code == ENOTSUP || code == EOPNOTSUPP || code == EXDEV || code == EMLINK { return false }
    throw FileWriteError.posix(destination.path, "linking \(source.path) to it", code)
  }

  /// `unlink(2)` of a file.
  public func removeFile(_ url: URL) throws {
    try beforeOperation(.removeFile(url.path))
    guard unlink(url.path) == 0 else { throw FileWriteError.posix(url.path, "removing the file") }
  }

  /// Removes a directory and the files directly inside it (checkpoint folders hold no subfolders).
  public func removeDirectory(_ url: URL) throws {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
    for name in names.sorted() { try removeFile(url.appendingPathComponent(name)) }
    try beforeOperation(.removeDirectory(url.path))
    guard rmdir(url.path) == 0 else { throw FileWriteError.posix(url.path, "removing the directory") }
  }
}

/// `rename(2)` and `link(2)`, named apart from Foundation's.
@inline(__always)
private func systemRename(_ source: String, _ destination: String) -> Int32 {
  #if canImport(Darwin)
    return Darwin.rename(source, destination)
  #elseif canImport(Musl)
    return Musl.rename(source, destination)
  #else
    return Glibc.rename(source, destination)
  #endif
}

@inline(__always)
private func systemLink(_ source: String, _ destination: String) -> Int32 {
  #if canImport(Darwin)
    return Darwin.link(source, destination)
  #elseif canImport(Musl)
    return Musl.link(source, destination)
  #else
    return Glibc.link(source, destination)
  #endif
}
