import Foundation

/// Why a safetensors file could not be read or written.
public enum SafetensorsError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// The file is shorter than the 8-byte header-length prefix.
  case fileTooShort(size: Int)
  /// The header length points beyond the end of the file.
  case headerLengthOutOfBounds(headerLength: UInt64, fileSize: Int)
  /// The header is not valid UTF-8 JSON of the expected structure.
  case invalidHeader(String)
  /// A tensor's dtype is not one this reader converts (F32, F16, BF16, F64).
  case unsupportedDType(tensor: String, dtype: String)
  /// `data_offsets` is not `[begin, end]` with `begin ≤ end`.
  case invalidOffsets(tensor: String, offsets: [Int])
  /// A tensor's byte range extends past the data buffer.
  case offsetsOutOfBounds(tensor: String, begin: Int, end: Int, bufferSize: Int)
  /// A tensor's byte range does not have the size its shape and dtype need.
  case shapeMismatch(tensor: String, shape: [Int], dtype: String, expectedBytes: Int, actualBytes: Int)
  /// Two tensors' byte ranges overlap.
  case overlappingTensors(String, String)
  /// Bytes of the data buffer between tensors belong to none of them.
  case gap(begin: Int, end: Int)
  /// Bytes at the end of the data buffer belong to no tensor.
  case trailingBytes(begin: Int, end: Int)
  /// A tensor name the format cannot store (empty, or the reserved `__metadata__`).
  case invalidTensorName(String)
  /// The file could not be read.
  case unreadable(path: String, reason: String)

  public var description: String {
    switch self {
    case .fileTooShort(let size):
      return "safetensors: file has \(size) bytes, fewer than the 8-byte header length"
    case .headerLengthOutOfBounds(let length, let fileSize):
      return "safetensors: header length \(length) exceeds the \(fileSize - 8) bytes after the length prefix"
    case .invalidHeader(let reason):
      return "safetensors: invalid header: \(reason)"
    case .unsupportedDType(let tensor, let dtype):
      return "safetensors: tensor '\(tensor)' has unsupported dtype \(dtype) (supported: F32, F16, BF16, F64)"
    case .invalidOffsets(let tensor, let offsets):
      return "safetensors: tensor '\(tensor)' has invalid data_offsets \(offsets) (need [begin, end], 0 ≤ begin ≤ end)"
    case .offsetsOutOfBounds(let tensor, let begin, let end, let size):
      return "safetensors: tensor '\(tensor)' data_offsets [\(begin), \(end)] exceed the \(size)-byte data buffer"
    case .shapeMismatch(let tensor, let shape, let dtype, let expected, let actual):
      return "safetensors: tensor '\(tensor)' of shape \(shape) and dtype \(dtype) needs \(expected) bytes, "
        + "its data_offsets cover \(actual)"
    case .overlappingTensors(let a, let b):
      return "safetensors: the data of tensors '\(a)' and '\(b)' overlap"
    case .gap(let begin, let end):
      return "safetensors: bytes \(begin)..<\(end) of the data buffer belong to no tensor"
    case .trailingBytes(let begin, let end):
      return "safetensors: \(end - begin) trailing bytes (\(begin)..<\(end)) of the data buffer belong to no tensor"
    case .invalidTensorName(let name):
      return "safetensors: invalid tensor name '\(name)'"
    case .unreadable(let path, let reason):
      return "safetensors: cannot read \(path): \(reason)"
    }
  }

  public var errorDescription: String? { description }
}

/// The element types this module reads; all are converted to `Float`.
public enum SafetensorsDType: String, CaseIterable, Sendable {
  case f32 = "F32"
  case f16 = "F16"
  case bf16 = "BF16"
  case f64 = "F64"

  public var byteSize: Int {
    switch self {
    case .f16, .bf16: return 2
    case .f32: return 4
    case .f64: return 8
    }
  }
}

/// The contents of a safetensors file.
public struct SafetensorsFile: Sendable {
  public var tensors: [String: Tensor]
  public var metadata: [String: String]

  public init(tensors: [String: Tensor], metadata: [String: String] = [:]) {
    self.tensors = tensors
    self.metadata = metadata
  }
}

/// The safetensors checkpoint format (Hugging Face).
///
/// Layout: an 8-byte little-endian header length `N`, `N` bytes of UTF-8 JSON
/// `{"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...}`,
/// then the data buffer; offsets are relative to the buffer, little-endian, row-major.
public enum Safetensors {
  // MARK: Writing

  /// Encodes F32 tensors and string metadata.
  ///
  /// Tensors are laid out in sorted name order, back to back; the header is padded with
  /// spaces so the buffer starts at a multiple of 8 bytes.
  public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:]) throws -> Data {
    let names = tensors.keys.sorted()
    for name in names where name.isEmpty || name == "__metadata__" {
      throw SafetensorsError.invalidTensorName(name)
    }
    var header = "{"
    var entries: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
      entries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
    }
    var offset = 0
    for name in names {
      let tensor = tensors[name]!
      let size = tensor.count * 4
      let shape = tensor.shape.map(String.init).joined(separator: ",")
      entries.append(
        "\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + size)]}")
      offset += size
    }
    header += entries.joined(separator: ",") + "}"
    var headerBytes = Data(header.utf8)
    let padding = (8 - headerBytes.count % 8) % 8
    headerBytes.append(contentsOf: [UInt8](repeating: UInt8(ascii: " "), count: padding))

    var data = Data(capacity: 8 + headerBytes.count + offset)
    withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(headerBytes)
    for name in names {
      // `scalars` is a host copy, whatever device the tensor lives on.
      tensors[name]!.scalars.withUnsafeBufferPointer { values in
        #if _endian(big)
          for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        #else
          data.append(values)
        #endif
      }
    }
    return data
  }

  /// Writes tensors and metadata to `url` atomically (see ``AtomicFile/write(_:to:)``).
  public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL) throws {
    try AtomicFile.write(encode(tensors, metadata: metadata), to: url)
  }

  // MARK: Reading

  /// Reads a safetensors file; see ``decode(_:)`` for the checks.
  public static func read(contentsOf url: URL) throws -> SafetensorsFile {
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .mappedIfSafe)
    } catch {
      throw SafetensorsError.unreadable(path: url.path, reason: error.localizedDescription)
    }
    return try decode(data)
  }

  struct Entry {
    var name: String
    var dtype: SafetensorsDType
    var shape: [Int]
    var begin: Int
    var end: Int
  }

  /// Decodes safetensors bytes, converting F16/BF16/F64 tensors to `Float`.
  ///
  /// Checks, in order: the length prefix and header bounds; the header is a JSON object whose
  /// entries have a known dtype, a shape of non-negative integers and `[begin, end]` offsets
  /// inside the buffer spanning exactly `product(shape) · size(dtype)` bytes; and the tensors
  /// tile the buffer exactly — no overlaps, gaps or trailing bytes (as the reference
  /// implementation requires).
  public static func decode(_ data: Data) throws -> SafetensorsFile {
    guard data.count >= 8 else { throw SafetensorsError.fileTooShort(size: data.count) }
    let headerLength = data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    guard headerLength <= UInt64(data.count - 8) else {
      throw SafetensorsError.headerLengthOutOfBounds(headerLength: headerLength, fileSize: data.count)
    }
    let headerEnd = 8 + Int(headerLength)
    let headerData = data[(data.startIndex + 8)..<(data.startIndex + headerEnd)]
    let (entries, metadata) = try parseHeader(headerData)
    let bufferSize = data.count - headerEnd

    // Per-tensor checks.
    for entry in entries {
      guard entry.end <= bufferSize else {
        throw SafetensorsError.offsetsOutOfBounds(
          tensor: entry.name, begin: entry.begin, end: entry.end, bufferSize: bufferSize)
      }
      var elements = 1
      var overflow = false
      for dim in entry.shape {
        let (product, didOverflow) = elements.multipliedReportingOverflow(by: dim)
        elements = product
        overflow = overflow || didOverflow
      }
      let (expected, sizeOverflow) = elements.multipliedReportingOverflow(by: entry.dtype.byteSize)
      if overflow || sizeOverflow || expected != entry.end - entry.begin {
        throw SafetensorsError.shapeMismatch(
          tensor: entry.name, shape: entry.shape, dtype: entry.dtype.rawValue,
          expectedBytes: overflow || sizeOverflow ? Int.max : expected, actualBytes: entry.end - entry.begin)
      }
    }

    // The tensors must tile the buffer.
    let sorted = entries.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
    var cursor = 0
    var previous: String?
    for entry in sorted {
      if entry.begin < cursor { throw SafetensorsError.overlappingTensors(previous!, entry.name) }
      if entry.begin > cursor { throw SafetensorsError.gap(begin: cursor, end: entry.begin) }
      if entry.end > entry.begin || previous == nil { previous = entry.name }
      cursor = entry.end
    }
    if cursor < bufferSize { throw SafetensorsError.trailingBytes(begin: cursor, end: bufferSize) }

    var tensors: [String: Tensor] = [:]
    data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
      let buffer = raw.baseAddress! + headerEnd
      for entry in entries {
        tensors[entry.name] = convert(buffer + entry.begin, entry)
      }
    }
    return SafetensorsFile(tensors: tensors, metadata: metadata)
  }

  /// Converts little-endian elements at `source` to a Float tensor.
  static func convert(_ source: UnsafeRawPointer, _ entry: Entry) -> Tensor {
    let count = entry.shape.reduce(1, *)
    // Decoded on the host, then copied into the tensor (on whatever device it lives) in one transfer.
    let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
      switch entry.dtype {
      case .f32:
        #if _endian(little)
          if let base = out.baseAddress { UnsafeMutableRawPointer(base).copyMemory(from: source, byteCount: 4 * out.count) }
        #else
          for i in out.indices {
            out[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
          }
        #endif
      case .f16:
        for i in out.indices {
          let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
          out[i] = Float(halfBits: bits)
        }
      case .bf16:
        for i in out.indices {
          let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
          out[i] = Float(bitPattern: UInt32(bits) << 16)
        }
      case .f64:
        for i in out.indices {
          out[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
        }
      }
      initialized = count
    }
    return Tensor(shape: entry.shape, scalars: values)
  }

  /// Coding keys for a JSON object with arbitrary keys.
  struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  struct TensorInfo: Decodable {
    var dtype: String
    var shape: [Int]
    var data_offsets: [Int]
  }

  struct Header: Decodable {
    var tensors: [(String, TensorInfo)] = []
    var metadata: [String: String] = [:]

    init(from decoder: Decoder) throws {
      let container = try decoder.container(keyedBy: AnyKey.self)
      for key in container.allKeys {
        if key.stringValue == "__metadata__" {
          metadata = try container.decode([String: String].self, forKey: key)
        } else {
          tensors.append((key.stringValue, try container.decode(TensorInfo.self, forKey: key)))
        }
      }
    }
  }

  static func parseHeader(_ bytes: Data) throws -> ([Entry], [String: String]) {
    guard String(data: bytes, encoding: .utf8) != nil else {
      throw SafetensorsError.invalidHeader("not valid UTF-8")
    }
    let header: Header
    do {
      // Strict first: duplicate tensor or metadata keys (which readers resolve differently), nesting
      // bombs and headers over the 100 MB the reference implementation accepts are errors.
      try StrictJSON.validate(bytes, limits: StrictJSON.Limits(maximumBytes: 100_000_000, maximumDepth: 8))
      header = try JSONDecoder().decode(Header.self, from: bytes)
    } catch let error as JSONInputError {
      throw SafetensorsError.invalidHeader(error.description)
    } catch let error as DecodingError {
      throw SafetensorsError.invalidHeader(describe(error))
    } catch {
      throw SafetensorsError.invalidHeader("\(error)")
    }
    var entries: [Entry] = []
    for (name, info) in header.tensors {
      guard let dtype = SafetensorsDType(rawValue: info.dtype) else {
        throw SafetensorsError.unsupportedDType(tensor: name, dtype: info.dtype)
      }
      guard info.shape.allSatisfy({ $0 >= 0 }) else {
        throw SafetensorsError.invalidHeader("tensor '\(name)' has a negative dimension in shape \(info.shape)")
      }
      let offsets = info.data_offsets
      guard offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
        throw SafetensorsError.invalidOffsets(tensor: name, offsets: offsets)
      }
      entries.append(Entry(name: name, dtype: dtype, shape: info.shape, begin: offsets[0], end: offsets[1]))
    }
    return (entries, header.metadata)
  }

  static func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
      let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
      return keys.isEmpty ? "" : " at \(keys.joined(separator: "."))"
    }
    switch error {
    case .dataCorrupted(let context):
      let underlying = context.underlyingError.map { ": \($0)" } ?? ""
      return "not valid JSON\(path(context)) (\(context.debugDescription)\(underlying))"
    case .keyNotFound(let key, let context):
      return "missing field '\(key.stringValue)'\(path(context))"
    case .typeMismatch(let type, let context):
      return "expected \(type)\(path(context)) (\(context.debugDescription))"
    case .valueNotFound(let type, let context):
      return "missing \(type) value\(path(context))"
    @unknown default:
      return "\(error)"
    }
  }

  /// A JSON string literal for `text`.
  static func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": result += "\\\""
      case "\\": result += "\\\\"
      case "\n": result += "\\n"
      case "\r": result += "\\r"
      case "\t": result += "\\t"
      case _ where scalar.value < 0x20:
        result += String(format: "\\u%04x", scalar.value)
      default: result.unicodeScalars.append(scalar)
      }
    }
    return result + "\""
  }
}

extension Float {
  /// Converts IEEE 754 half-precision bits (done by hand: `Float16` is unavailable on some targets).
  init(halfBits bits: UInt16) {
    let sign = UInt32(bits >> 15) << 31
    let exponent = Int((bits >> 10) & 0x1F)
    let mantissa = UInt32(bits & 0x3FF)
    if exponent == 0x1F {
      self = Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13)  // inf / nan
    } else if exponent == 0 {
      // Zero or subnormal: mantissa · 2⁻²⁴.
      let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
      self = sign != 0 ? -magnitude : magnitude
    } else {
      self = Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | mantissa << 13)
    }
  }
}
