import Foundation

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
}
