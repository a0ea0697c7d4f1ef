import Foundation

/// Why a `.npy` file could not be read or written; every message names the file.
public enum NumPyError: Error, Equatable, CustomStringConvertible, LocalizedError {
  case unreadable(path: String, reason: String)
  case badMagic(path: String)
  case unsupportedVersion(path: String, major: UInt8, minor: UInt8)
  case headerTooLarge(path: String, length: Int, limit: Int)
  case malformedHeader(path: String, reason: String)
  case unsupportedDType(path: String, descr: String)
  case fortranOrder(path: String)
  case shapeTooLarge(path: String, shape: [Int])
  case truncated(path: String, expectedBytes: Int, foundBytes: Int)
  case trailingBytes(path: String, expectedBytes: Int, foundBytes: Int)

  public var description: String {
    switch self {
    case .unreadable(let path, let reason): return "\(path): cannot read the .npy file: \(reason)"
    case .badMagic(let path): return "\(path): not a NumPy .npy file (the magic string \\x93NUMPY is missing)"
    case .unsupportedVersion(let path, let major, let minor):
      return "\(path): .npy format version \(major).\(minor) is not supported (1.0, 2.0 and 3.0 are)"
    case .headerTooLarge(let path, let length, let limit):
      return "\(path): .npy header of \(length) bytes exceeds the limit of \(limit) bytes"
    case .malformedHeader(let path, let reason): return "\(path): malformed .npy header: \(reason)"
    case .unsupportedDType(let path, let descr):
      return "\(path): dtype '\(descr)' is not supported (uint8 '|u1' or float32 '<f4' / '>f4')"
    case .fortranOrder(let path):
      return "\(path): fortran_order True is not supported; save a C-ordered array (numpy.ascontiguousarray)"
    case .shapeTooLarge(let path, let shape):
      return "\(path): shape \(shape) has more elements than this reader accepts (at most \(NumPyArray.maximumElementCount))"
    case .truncated(let path, let expected, let found):
      return "\(path): truncated .npy data: expected \(expected) bytes, found \(found)"
    case .trailingBytes(let path, let expected, let found):
      return "\(path): .npy file has \(found - expected) unexpected bytes after the \(expected) bytes of data"
    }
  }

  public var errorDescription: String? { description }
}

/// A NumPy array read from or written to a `.npy` file (format versions 1.0–3.0), holding
/// unsigned bytes or 32-bit floats in C (row-major) order.
///
/// The reader is strict and bounded: the header (at most ``maximumHeaderLength`` bytes) must be the
/// Python dict literal NumPy writes, with exactly the keys `descr`, `fortran_order` and `shape`;
/// the element count may not overflow nor exceed ``maximumElementCount``; and the file must hold
/// exactly `count · itemsize` bytes of data after the header.
public struct NumPyArray: Equatable, Sendable {
  /// The element types this reader understands.
  public enum Elements: Equatable, Sendable {
    case uint8([UInt8])
    case float32([Float])
    /// Signed integers (`<i4`, `<i8`): accepted for labels, which NumPy and PyTorch often store as int64.
    case int32([Int32])
    case int64([Int64])

    /// The number of elements.
    public var count: Int {
      switch self {
      case .uint8(let values): values.count
      case .float32(let values): values.count
      case .int32(let values): values.count
      case .int64(let values): values.count
      }
    }
  }

  public var shape: [Int]
  public var elements: Elements

  /// The largest header NumPy itself writes is far below this; the bound keeps a corrupt length from allocating.
  public static let maximumHeaderLength = 65_536
  /// 2³¹ elements (8 GiB of float32): larger arrays are not images this tool predicts on.
  public static let maximumElementCount = 1 << 31
  /// The six bytes every `.npy` file starts with, `\x93NUMPY` (public so readers can sniff the format).
  public static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

  public init(shape: [Int], elements: Elements) {
    precondition(shape.reduce(1, *) == elements.count, "NumPyArray: \(elements.count) elements for shape \(shape)")
    self.shape = shape
    self.elements = elements
  }

  /// The elements as floats (bytes are widened exactly).
  public var floats: [Float] {
    switch elements {
    case .uint8(let values): values.map(Float.init)
    case .float32(let values): values
    case .int32(let values): values.map(Float.init)
    case .int64(let values): values.map(Float.init)
    }
  }

  /// Reads a `.npy` file.
  public static func read(contentsOf url: URL) throws -> NumPyArray {
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .mappedIfSafe)
    } catch {
      let reason = FileManager.default.fileExists(atPath: url.path) ? error.localizedDescription : "no such file"
      throw NumPyError.unreadable(path: url.path, reason: reason)
    }
    return try parse(data, path: url.path)
  }

  /// Parses `.npy` bytes; `path` only names the source in errors.
  public static func parse(_ data: Data, path: String) throws -> NumPyArray {
    let bytes = [UInt8](data.prefix(12))
    guard bytes.count >= 8, Array(bytes[0..<6]) == magic else {
      if bytes.count < 8, magic.starts(with: bytes) || bytes.starts(with: magic) {
        throw NumPyError.truncated(path: path, expectedBytes: 10, foundBytes: data.count)
      }
      throw NumPyError.badMagic(path: path)
    }
    let major = bytes[6], minor = bytes[7]
    guard (1...3).contains(major), minor == 0 else {
      throw NumPyError.unsupportedVersion(path: path, major: major, minor: minor)
    }
    // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4 (3.0: the header is UTF-8).
    let lengthSize = major == 1 ? 2 : 4
    let prefixSize = 8 + lengthSize
    guard bytes.count >= prefixSize else {
      throw NumPyError.truncated(path: path, expectedBytes: prefixSize, foundBytes: data.count)
    }
    var headerLength = 0
    for i in (0..<lengthSize).reversed() { headerLength = headerLength << 8 | Int(bytes[8 + i]) }
    guard headerLength <= maximumHeaderLength else {
      throw NumPyError.headerTooLarge(path: path, length: headerLength, limit: maximumHeaderLength)
    }
    let dataOffset = prefixSize + headerLength
    guard data.count >= dataOffset else {
      throw NumPyError.truncated(path: path, expectedBytes: dataOffset, foundBytes: data.count)
    }
    let headerBytes = data.subdata(in: data.startIndex + prefixSize..<data.startIndex + dataOffset)
    guard let headerText = String(data: headerBytes, encoding: major == 3 ? .utf8 : .isoLatin1) else {
      throw NumPyError.malformedHeader(path: path, reason: "the header is not valid text")
    }
    let header = try NumPyHeader(parsing: headerText, path: path)
    guard !header.fortranOrder else { throw NumPyError.fortranOrder(path: path) }

    var count = 1
    for dimension in header.shape {
      let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
      guard !overflow, product <= maximumElementCount else { throw NumPyError.shapeTooLarge(path: path, shape: header.shape) }
      count = product
    }
    let expected = dataOffset + count * header.itemSize
    guard data.count >= expected else {
      throw NumPyError.truncated(path: path, expectedBytes: expected - dataOffset, foundBytes: data.count - dataOffset)
    }
    guard data.count == expected else {
      throw NumPyError.trailingBytes(path: path, expectedBytes: expected - dataOffset, foundBytes: data.count - dataOffset)
    }
    let payload = data.subdata(in: data.startIndex + dataOffset..<data.startIndex + expected)
    switch header.dtype {
    case .uint8:
      return NumPyArray(shape: header.shape, elements: .uint8([UInt8](payload)))
    case .float32(let bigEndian):
      var values = [Float](repeating: 0, count: count)
      payload.withUnsafeBytes { raw in
        for i in 0..<count {
          let bits = raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
          values[i] = Float(bitPattern: bigEndian ? UInt32(bigEndian: bits) : UInt32(littleEndian: bits))
        }
      }
      return NumPyArray(shape: header.shape, elements: .float32(values))
    case .int32(let bigEndian):
      let words = unsignedWords(payload, count: count, bigEndian: bigEndian, as: UInt32.self)
      return NumPyArray(shape: header.shape, elements: .int32(words.map { Int32(bitPattern: $0) }))
    case .int64(let bigEndian):
      let words = unsignedWords(payload, count: count, bigEndian: bigEndian, as: UInt64.self)
      return NumPyArray(shape: header.shape, elements: .int64(words.map { Int64(bitPattern: $0) }))
    }
  }

  /// `count` unsigned words of `payload` in the file's byte order.
  static func unsignedWords<Word: FixedWidthInteger & UnsignedInteger>(
    _ payload: Data, count: Int, bigEndian: Bool, as: Word.Type
  ) -> [Word] {
    payload.withUnsafeBytes { raw in
      (0..<count).map { i in
        let bits = raw.loadUnaligned(fromByteOffset: MemoryLayout<Word>.size * i, as: Word.self)
        return bigEndian ? Word(bigEndian: bits) : Word(littleEndian: bits)
      }
    }
  }

  /// The file bytes (format 1.0, little-endian; the header padded so the data starts at a multiple of 64).
  public func encoded() -> Data {
    let descr: String
    switch elements {
    case .uint8: descr = "|u1"
    case .float32: descr = "<f4"
    case .int32: descr = "<i4"
    case .int64: descr = "<i8"
    }
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var data = Data(Self.magic + [1, 0])
    let length = UInt16(header.utf8.count)
    data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
    data.append(contentsOf: Array(header.utf8))
    switch elements {
    case .uint8(let values): data.append(contentsOf: values)
    case .float32(let values):
      data.reserveCapacity(data.count + 4 * values.count)
      for value in values {
        let bits = value.bitPattern.littleEndian
        data.append(contentsOf: [UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24)])
      }
    case .int32(let values):
      for value in values { data.append(contentsOf: (0..<4).map { UInt8(truncatingIfNeeded: UInt32(bitPattern: value) >> (8 * $0)) }) }
    case .int64(let values):
      for value in values { data.append(contentsOf: (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: value) >> (8 * $0)) }) }
    }
    return data
  }
}

/// The header dict of a `.npy` file: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
struct NumPyHeader {
  enum DType: Equatable {
    case uint8
    case float32(bigEndian: Bool)
    case int32(bigEndian: Bool)
    case int64(bigEndian: Bool)
  }

  var dtype: DType
  var fortranOrder: Bool
  var shape: [Int]

  var itemSize: Int {
    switch dtype {
    case .uint8: 1
    case .float32, .int32: 4
    case .int64: 8
    }
  }

  /// The most dimensions accepted (NumPy's own limit is 64).
  static let maximumRank = 32

  /// Parses the Python literal strictly: one dict of exactly the three keys, each once.
  init(parsing text: String, path: String) throws {
    var parser = LiteralParser(text: Array(text.unicodeScalars), path: path)
    let entries = try parser.parseDict()
    func fail(_ reason: String) -> NumPyError { .malformedHeader(path: path, reason: reason) }
    let keys = entries.map(\.key)
    guard Set(keys).count == keys.count else { throw fail("duplicate keys in \(keys)") }
    guard Set(keys) == ["descr", "fortran_order", "shape"] else {
      throw fail("expected the keys 'descr', 'fortran_order' and 'shape', found \(keys.map { "'\($0)'" }.joined(separator: ", "))")
    }
    let values = Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) })
    guard case .string(let descr) = values["descr"]! else { throw fail("'descr' must be a string") }
    switch descr {
    case "|u1", "<u1", ">u1", "=u1", "u1": dtype = .uint8
    case "<f4", "=f4", "f4": dtype = .float32(bigEndian: false)
    case ">f4": dtype = .float32(bigEndian: true)
    case "<i4", "=i4", "i4": dtype = .int32(bigEndian: false)
    case ">i4": dtype = .int32(bigEndian: true)
    case "<i8", "=i8", "i8": dtype = .int64(bigEndian: false)
    case ">i8": dtype = .int64(bigEndian: true)
    default: throw NumPyError.unsupportedDType(path: path, descr: descr)
    }
    guard case .bool(let fortran) = values["fortran_order"]! else { throw fail("'fortran_order' must be True or False") }
    fortranOrder = fortran
    guard case .tuple(let dimensions) = values["shape"]! else { throw fail("'shape' must be a tuple of integers") }
    guard dimensions.count <= Self.maximumRank else {
      throw fail("shape has \(dimensions.count) dimensions (at most \(Self.maximumRank))")
    }
    shape = dimensions
  }
}

/// A recursive-descent parser for the subset of Python literals a `.npy` header uses.
private struct LiteralParser {
  enum Value {
    case string(String)
    case bool(Bool)
    case tuple([Int])
  }

  let text: [Unicode.Scalar]
  let path: String
  var position = 0

  init(text: [Unicode.Scalar], path: String) {
    self.text = text
    self.path = path
  }

  func fail(_ reason: String) -> NumPyError {
    .malformedHeader(path: path, reason: "\(reason) at character \(position)")
  }

  mutating func skipSpace() {
    while position < text.count, text[position].properties.isWhitespace { position += 1 }
  }

  mutating func expect(_ character: Unicode.Scalar) throws {
    skipSpace()
    guard position < text.count, text[position] == character else { throw fail("expected '\(character)'") }
    position += 1
  }

  /// Consumes `character` if it comes next (after spaces).
  mutating func accept(_ character: Unicode.Scalar) -> Bool {
    skipSpace()
    guard position < text.count, text[position] == character else { return false }
    position += 1
    return true
  }

  mutating func parseDict() throws -> [(key: String, value: Value)] {
    try expect("{")
    var entries: [(key: String, value: Value)] = []
    while !accept("}") {
      guard entries.count < 8 else { throw fail("too many entries") }
      let key = try parseString()
      try expect(":")
      entries.append((key, try parseValue()))
      if !accept(",") {
        try expect("}")
        break
      }
    }
    skipSpace()
    guard position == text.count else { throw fail("unexpected text after the dict") }
    return entries
  }

  mutating func parseString() throws -> String {
    skipSpace()
    guard position < text.count, text[position] == "'" || text[position] == "\"" else { throw fail("expected a string") }
    let quote = text[position]
    position += 1
    var result = String.UnicodeScalarView()
    while position < text.count, text[position] != quote {
      guard text[position] != "\\", result.count < 64 else { throw fail("unsupported string") }
      result.append(text[position])
      position += 1
    }
    guard position < text.count else { throw fail("unterminated string") }
    position += 1
    return String(result)
  }

  mutating func parseValue() throws -> Value {
    skipSpace()
    guard position < text.count else { throw fail("missing value") }
    switch text[position] {
    case "'", "\"": return .string(try parseString())
    case "(": return .tuple(try parseTuple())
    default:
      for (word, value) in [("True", true), ("False", false)] where text[position...].starts(with: word.unicodeScalars) {
        position += word.unicodeScalars.count
        return .bool(value)
      }
      throw fail("unsupported value")
    }
  }

  mutating func parseTuple() throws -> [Int] {
    try expect("(")
    var values: [Int] = []
    while !accept(")") {
      guard values.count <= NumPyHeader.maximumRank else { throw fail("too many dimensions") }
      values.append(try parseInteger())
      if !accept(",") {
        try expect(")")
        break
      }
    }
    return values
  }

  mutating func parseInteger() throws -> Int {
    skipSpace()
    let start = position
    var value = 0
    while position < text.count, let digit = text[position].properties.numericType == .decimal ? Int(String(text[position])) : nil,
      text[position].isASCII
    {
      let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
      let (sum, overflow2) = shifted.addingReportingOverflow(digit)
      guard !overflow1, !overflow2 else { throw fail("dimension too large") }
      value = sum
      position += 1
    }
    guard position > start else { throw fail("expected a non-negative integer dimension") }
    return value
  }
}
