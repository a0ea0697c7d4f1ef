import Foundation
import QuadraIO

/// Output helpers: results go to standard output, progress to standard error.
enum Terminal {
  static func status(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
  }

  static func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
  }

  /// Runs a command's body, turning Foundation's file errors (on Linux printed as an `NSError` dump:
  /// domain, code, user info) into "PATH: what failed: reason"; other errors pass through unchanged.
  static func withReadableFileErrors<T>(_ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch {
      throw FileWriteError(foundationError: error, path: "?", operation: "file access") ?? error
    }
  }
}
