import Foundation

/// A JSON document that is malformed, too large, too deep, has a duplicate key, or does not
/// decode into the expected type. ``path`` is where (e.g. `mixers[2].kernelSize`), empty for the top level.
public struct JSONInputError: Error, Equatable, CustomStringConvertible, LocalizedError {
  public var path: String
  public var message: String

  public init(path: String, message: String) {
    self.path = path
    self.message = message
  }

  public var description: String { path.isEmpty ? message : "\(path): \(message)" }
  public var errorDescription: String? { description }
}

/// A strict RFC 8259 reader that runs before `JSONDecoder`.
///
/// Foundation's readers cannot see duplicate keys (the first occurrence wins, while Python's `json`
/// keeps the last: the same file would mean two different models), accept nesting as deep as the
/// stack allows and report problems as Swift debug text. This validator rejects duplicate keys with
/// their path, bounds the size and nesting depth of the document (its recursion is at most
/// ``Limits/maximumDepth`` deep), and ``decode(_:from:limits:)`` turns decoding errors into
/// "`path`: problem" messages.
public enum StrictJSON {
  /// Bounds on a document; exceeding one is an error, never a large allocation.
  public struct Limits: Sendable, Equatable {
    /// Largest document, in bytes.
    public var maximumBytes: Int
    /// Deepest nesting of objects and arrays (the top-level container is depth 1).
    public var maximumDepth: Int

    public init(maximumBytes: Int = 16 << 20, maximumDepth: Int = 32) {
      self.maximumBytes = maximumBytes
      self.maximumDepth = maximumDepth
    }

    /// Model configs: 1 MiB, depth 16.
    public static let config = Limits(maximumBytes: 1 << 20, maximumDepth: 16)
  }

  /// Checks `data` is one well-formed JSON value within `limits`, with no duplicate object keys.
  public static func validate(_ data: Data, limits: Limits = Limits()) throws {
    _ = try parse(data, limits: limits)
  }

  /// Validates `data`; returns the path and text of the first number beyond `Float`'s range or
  /// `Int64`'s (for integer literals), which `JSONDecoder` may reject without naming a path.
  static func parse(_ data: Data, limits: Limits) throws -> (path: String, text: String)? {
    guard data.count <= limits.maximumBytes else {
      throw JSONInputError(
        path: "", message: "the JSON document has \(data.count) bytes; at most \(limits.maximumBytes) are allowed")
    }
    guard String(data: data, encoding: .utf8) != nil else {
      throw JSONInputError(path: "", message: "the JSON document is not valid UTF-8")
    }
    return try data.withUnsafeBytes { bytes in
      var parser = Parser(bytes: bytes, maximumDepth: limits.maximumDepth)
      try parser.parseDocument()
      return parser.firstLargeNumber
    }
  }

  /// Validates `data` strictly, then decodes it; errors name the JSON path and the problem.
  public static func decode<T: Decodable>(_ type: T.Type, from data: Data, limits: Limits = Limits()) throws -> T {
    let largeNumber = try parse(data, limits: limits)
    do {
      return try JSONDecoder().decode(T.self, from: data)
    } catch let error as DecodingError {
      var described = describe(error)
      // The document is valid JSON, so a path-less "not valid JSON" is a number its field cannot hold.
      if case .dataCorrupted(let context) = error, context.codingPath.isEmpty, let largeNumber {
        described = JSONInputError(
          path: largeNumber.path, message: "the number \(largeNumber.text) is out of range for this field")
      }
      throw described
    }
  }

  /// `codingPath` as `a.b[2].c`.
  public static func pathString(_ codingPath: [any CodingKey]) -> String {
    var result = ""
    for key in codingPath {
      if let index = key.intValue {
        result += "[\(index)]"
      } else {
        result += result.isEmpty ? key.stringValue : ".\(key.stringValue)"
      }
    }
    return result
  }

  static func describe(_ error: DecodingError) -> JSONInputError {
    switch error {
    case .keyNotFound(let key, let context):
      let parent = pathString(context.codingPath)
      return JSONInputError(path: parent, message: "missing field '\(key.stringValue)'")
    case .typeMismatch(let type, let context):
      return JSONInputError(
        path: pathString(context.codingPath), message: "expected \(typeName(type)) (\(context.debugDescription))")
    case .valueNotFound(let type, let context):
      return JSONInputError(path: pathString(context.codingPath), message: "expected \(typeName(type)), found null")
    case .dataCorrupted(let context):
      // Out-of-range numbers (e.g. 1e39 for a Float) are reported through the underlying error.
      let underlying = context.underlyingError.map { error -> String in
        let text = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
        return " (\(text.prefix(200)))"
      }
      return JSONInputError(path: pathString(context.codingPath), message: context.debugDescription + (underlying ?? ""))
    @unknown default:
      return JSONInputError(path: "", message: "\(error)")
    }
  }

  static func typeName(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is UInt64.Type: return "an integer"
    case is Float.Type, is Double.Type: return "a number"
    case is String.Type: return "a string"
    case is Bool.Type: return "true or false"
    default:
      let name = "\(type)"
      if name.hasPrefix("Array") { return "an array" }
      if name.hasPrefix("Dictionary") { return "an object" }
      return "a value of type \(name)"
    }
  }

  /// A recursive-descent parser whose recursion is bounded by `maximumDepth`.
  struct Parser {
    struct Frame {
      var isObject: Bool
      var keys: Set<String> = []
      var key: String?
      var index = 0
    }

    let bytes: UnsafeRawBufferPointer
    let maximumDepth: Int
    var position = 0
    var frames: [Frame] = []
    /// The first number beyond `Float`'s range, or an integer literal beyond `Int64`'s (path, text).
    var firstLargeNumber: (path: String, text: String)?

    init(bytes: UnsafeRawBufferPointer, maximumDepth: Int) {
      self.bytes = bytes
      self.maximumDepth = maximumDepth
    }

    var path: String {
      var result = ""
      for frame in frames {
        if frame.isObject {
          if let key = frame.key { result += result.isEmpty ? key : ".\(key)" }
        } else {
          result += "[\(frame.index)]"
        }
      }
      return result
    }

    func fail(_ message: String) -> JSONInputError {
      JSONInputError(path: path, message: "\(message) (byte \(position))")
    }

    mutating func skipWhitespace() {
      while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
    }

    mutating func parseDocument() throws {
      try parseValue()
      skipWhitespace()
      guard position == bytes.count else { throw fail("unexpected data after the JSON value") }
    }

    mutating func parseValue() throws {
      skipWhitespace()
      guard position < bytes.count else { throw fail("unexpected end of the JSON document") }
      switch bytes[position] {
      case UInt8(ascii: "{"):
        try parseContainer(isObject: true)
      case UInt8(ascii: "["):
        try parseContainer(isObject: false)
      case UInt8(ascii: "\""):
        _ = try parseString()
      case UInt8(ascii: "t"): try parseLiteral("true")
      case UInt8(ascii: "f"): try parseLiteral("false")
      case UInt8(ascii: "n"): try parseLiteral("null")
      case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        try parseNumber()
      default:
        throw fail("unexpected character '\(UnicodeScalar(bytes[position]))'")
      }
    }

    mutating func parseContainer(isObject: Bool) throws {
      guard frames.count < maximumDepth else {
        throw fail("nesting deeper than \(maximumDepth) levels")
      }
      let close = UInt8(ascii: isObject ? "}" : "]")
      position += 1
      frames.append(Frame(isObject: isObject))
      skipWhitespace()
      if position < bytes.count, bytes[position] == close {
        position += 1
        frames.removeLast()
        return
      }
      while true {
        if isObject { try parseMember() } else { try parseValue() }
        skipWhitespace()
        guard position < bytes.count else { throw fail("unexpected end of the JSON document") }
        let byte = bytes[position]
        position += 1
        if byte == close { break }
        guard byte == UInt8(ascii: ",") else {
          position -= 1
          throw fail("expected ',' or '\(UnicodeScalar(close))'")
        }
        if !isObject { frames[frames.count - 1].index += 1 }
      }
      frames.removeLast()
    }

    mutating func parseMember() throws {
      skipWhitespace()
      guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
      let key = try parseString()
      let last = frames.count - 1
      let isNew = frames[last].keys.insert(key).inserted
      // The path of a duplicate is its object's; of anything inside the member, it includes the key.
      frames[last].key = nil
      guard isNew else {
        throw JSONInputError(path: path, message: "duplicate key '\(key)' (each key may appear once per object)")
      }
      frames[last].key = key
      skipWhitespace()
      guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw fail("expected ':'") }
      position += 1
      try parseValue()
    }

    mutating func parseLiteral(_ word: String) throws {
      for expected in word.utf8 {
        guard position < bytes.count, bytes[position] == expected else { throw fail("invalid literal (expected \(word))") }
        position += 1
      }
    }

    mutating func parseNumber() throws {
      func digits() -> Int {
        let start = position
        while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) { position += 1 }
        return position - start
      }
      let start = position
      if bytes[position] == UInt8(ascii: "-") { position += 1 }
      guard position < bytes.count else { throw fail("invalid number") }
      if bytes[position] == UInt8(ascii: "0") {
        position += 1
      } else {
        guard digits() > 0 else { throw fail("invalid number") }
      }
      if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
        position += 1
        guard digits() > 0 else { throw fail("invalid number (no digits after '.')") }
      }
      if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
        position += 1
        if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
          position += 1
        }
        guard digits() > 0 else { throw fail("invalid number (no digits in the exponent)") }
      }
      if firstLargeNumber == nil {
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        let isInteger = !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
        let fits =
          isInteger
          ? Int64(text) != nil || UInt64(text) != nil
          : Double(text).map { abs($0) <= Double(Float.greatestFiniteMagnitude) } ?? false
        if !fits { firstLargeNumber = (path, String(text.prefix(40))) }
      }
    }

    /// Reads a string (the opening quote is at `position`) and returns it unescaped.
    mutating func parseString() throws -> String {
      position += 1
      var utf8: [UInt8] = []
      while true {
        guard position < bytes.count else { throw fail("unterminated string") }
        let byte = bytes[position]
        position += 1
        switch byte {
        case UInt8(ascii: "\""):
          return String(decoding: utf8, as: UTF8.self)
        case UInt8(ascii: "\\"):
          guard position < bytes.count else { throw fail("unterminated string") }
          let escape = bytes[position]
          position += 1
          switch escape {
          case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
          case UInt8(ascii: "b"): utf8.append(0x08)
          case UInt8(ascii: "f"): utf8.append(0x0C)
          case UInt8(ascii: "n"): utf8.append(0x0A)
          case UInt8(ascii: "r"): utf8.append(0x0D)
          case UInt8(ascii: "t"): utf8.append(0x09)
          case UInt8(ascii: "u"):
            var value = try parseHex4()
            if (0xD800..<0xDC00).contains(value) {
              guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                bytes[position + 1] == UInt8(ascii: "u")
              else { throw fail("unpaired UTF-16 surrogate in a \\u escape") }
              position += 2
              let low = try parseHex4()
              guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired UTF-16 surrogate in a \\u escape") }
              value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00..<0xE000).contains(value) {
              throw fail("unpaired UTF-16 surrogate in a \\u escape")
            }
            guard let scalar = UnicodeScalar(value) else { throw fail("invalid \\u escape") }
            utf8.append(contentsOf: Array(String(Character(scalar)).utf8))
          default:
            throw fail("invalid escape '\\\(UnicodeScalar(escape))'")
          }
        case 0..<0x20:
          throw fail("unescaped control character in a string")
        default:
          utf8.append(byte)
        }
      }
    }

    mutating func parseHex4() throws -> UInt32 {
      guard position + 4 <= bytes.count else { throw fail("truncated \\u escape") }
      var value: UInt32 = 0
      for _ in 0..<4 {
        let byte = bytes[position]
        let digit: UInt32
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
        default: throw fail("invalid hex digit in a \\u escape")
        }
        value = value << 4 | digit
        position += 1
      }
      return value
    }
  }
}
