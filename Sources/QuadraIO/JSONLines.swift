import Foundation

/// Appends `Codable` records to a JSON Lines file (one JSON object per line), e.g. per-epoch metrics.
///
/// Each record is encoded first and written with a single `write`, newline included, so a crash
/// leaves at most one incomplete last line, never an interleaved one. Keys are sorted so files diff
/// cleanly; non-finite floats (a diverged loss) are written as the strings "NaN", "Infinity",
/// "-Infinity" rather than failing the write.
public final class JSONLinesWriter: @unchecked Sendable {
  public enum Mode: Sendable {
    /// Keep existing lines and add after them (resuming a run).
    case append
    /// Start an empty file.
    case truncate
  }

  public let url: URL
  private let handle: FileHandle
  private let encoder: JSONEncoder
  private let lock = NSLock()
  private var closed = false

  /// Opens (creating if needed) `url` for appending records.
  public init(url: URL, mode: Mode = .append) throws {
    self.url = url
    let manager = FileManager.default
    if mode == .truncate || !manager.fileExists(atPath: url.path) {
      guard manager.createFile(atPath: url.path, contents: nil) else {
        throw FileWriteError(path: url.path, operation: "creating the file", reason: "cannot create it (missing directory?)")
      }
    }
    do {
      handle = try FileHandle(forWritingTo: url)
      try handle.seekToEnd()
    } catch {
      throw FileWriteError(path: url.path, operation: "opening for append", reason: error.localizedDescription)
    }
    encoder = JSONLinesWriter.makeEncoder()
  }

  static func makeEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return encoder
  }

  /// Appends one record as a line.
  public func append<T: Encodable>(_ record: T) throws {
    var line = try encoder.encode(record)
    line.append(UInt8(ascii: "\n"))
    try lock.withLock {
      opPrecondition(!closed, "JSONLinesWriter.append: \(url.path) is closed")
      do {
        try handle.write(contentsOf: line)
      } catch {
        throw FileWriteError(path: url.path, operation: "appending a record", reason: error.localizedDescription)
      }
    }
  }

  /// Flushes the file to disk.
  public func synchronize() throws {
    try lock.withLock { try handle.synchronize() }
  }

  /// Closes the file; later appends are a programming error.
  public func close() throws {
    try lock.withLock {
      guard !closed else { return }
      closed = true
      try handle.close()
    }
  }

  deinit {
    if !closed { try? handle.close() }
  }

  /// Reads every record of a JSON Lines file (blank lines are skipped).
  public static func read<T: Decodable>(_ type: T.Type, from url: URL) throws -> [T] {
    let data = try Data(contentsOf: url)
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return try data.split(separator: UInt8(ascii: "\n")).compactMap { line in
      line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) ? nil : try decoder.decode(T.self, from: Data(line))
    }
  }
}
