import Foundation

/// An unsigned-byte array from an IDX file (the MNIST / Fashion-MNIST format).
public struct IDXArray: Equatable, Sendable {
  /// The dimensions from the header, outermost first (e.g. `[count, rows, columns]`).
  public var dimensions: [Int]
  /// The row-major payload; its count is the product of ``dimensions``.
  public var bytes: [UInt8]

  public init(dimensions: [Int], bytes: [UInt8]) {
    opPrecondition(
      dimensions.allSatisfy { $0 >= 0 && $0 <= Int(UInt32.max) } && dimensions.count <= 255,
      "IDXArray: invalid dimensions \(dimensions)")
    opPrecondition(
      bytes.count == dimensions.reduce(1, *),
      "IDXArray: \(bytes.count) bytes for dimensions \(dimensions) (need \(dimensions.reduce(1, *)))")
    self.dimensions = dimensions
    self.bytes = bytes
  }
}

/// Reads and writes IDX files.
///
/// Layout (big-endian): `00 00 <type> <rank>`, then `rank` 32-bit dimensions, then the
/// elements. Only type `0x08` (unsigned byte) is used by MNIST-style datasets and supported
/// here. Files may be gzip-compressed; that is recognized by the magic bytes `1f 8b`, not
/// by the file name.
public enum IDX {
  /// The IDX element-type code of unsigned bytes.
  public static let unsignedByteType: UInt8 = 0x08

  /// Reads an IDX file, decompressing it first if it is gzipped.
  public static func read(contentsOf url: URL) throws -> IDXArray {
    try parse(readFileDecompressing(url), path: url.path)
  }

  /// Parses IDX bytes; `path` only names the source in errors.
  ///
  /// The payload must match the header exactly: a shorter file is ``DatasetError/truncated(path:expectedBytes:foundBytes:)``,
  /// a longer one ``DatasetError/trailingBytes(path:expectedBytes:foundBytes:)``.
  public static func parse(_ data: Data, path: String) throws -> IDXArray {
    // Only the header is copied out; the payload is copied once, into the result.
    let header = [UInt8](data.prefix(4 + 4 * 255))
    let fileSize = data.count
    guard fileSize >= 4 else {
      if fileSize >= 2, header[0] != 0 || header[1] != 0 { throw DatasetError.badMagic(path: path, bytes: header) }
      throw DatasetError.truncated(path: path, expectedBytes: 4, foundBytes: fileSize)
    }
    guard header[0] == 0, header[1] == 0 else {
      throw DatasetError.badMagic(path: path, bytes: Array(header[0..<4]))
    }
    guard header[2] == unsignedByteType else { throw DatasetError.unsupportedDataType(path: path, code: header[2]) }
    let rank = Int(header[3])
    let headerSize = 4 + 4 * rank
    guard fileSize >= headerSize else {
      throw DatasetError.truncated(path: path, expectedBytes: headerSize, foundBytes: fileSize)
    }
    var dimensions: [Int] = []
    var payloadSize = 1
    var overflow = false
    for d in 0..<rank {
      let o = 4 + 4 * d
      let dim = Int(header[o]) << 24 | Int(header[o + 1]) << 16 | Int(header[o + 2]) << 8 | Int(header[o + 3])
      dimensions.append(dim)
      let (product, didOverflow) = payloadSize.multipliedReportingOverflow(by: dim)
      payloadSize = product
      overflow = overflow || didOverflow
    }
    let (expected, sumOverflow) = headerSize.addingReportingOverflow(payloadSize)
    if overflow || sumOverflow {
      throw DatasetError.truncated(path: path, expectedBytes: Int.max, foundBytes: fileSize)
    }
    if fileSize < expected {
      throw DatasetError.truncated(path: path, expectedBytes: expected, foundBytes: fileSize)
    }
    if fileSize > expected {
      throw DatasetError.trailingBytes(path: path, expectedBytes: expected, foundBytes: fileSize)
    }
    return IDXArray(dimensions: dimensions, bytes: [UInt8](data.dropFirst(headerSize)))
  }

  /// Encodes an unsigned-byte IDX file (uncompressed).
  public static func encode(_ array: IDXArray) -> Data {
    var data = Data([0, 0, unsignedByteType, UInt8(array.dimensions.count)])
    for dim in array.dimensions {
      let value = UInt32(dim)
      data.append(contentsOf: [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)])
    }
    data.append(contentsOf: array.bytes)
    return data
  }

  /// Reads a 1-D label file and checks every label is in `0..<classCount`.
  public static func readLabels(contentsOf url: URL, classCount: Int) throws -> [Int] {
    let array = try read(contentsOf: url)
    return try labels(from: array, classCount: classCount, path: url.path)
  }

  /// Validates a 1-D label array.
  static func labels(from array: IDXArray, classCount: Int, path: String) throws -> [Int] {
    guard array.dimensions.count == 1 else {
      throw DatasetError.unexpectedRank(path: path, expected: 1, dimensions: array.dimensions)
    }
    if let index = array.bytes.firstIndex(where: { Int($0) >= classCount }) {
      throw DatasetError.labelOutOfRange(path: path, label: Int(array.bytes[index]), classCount: classCount, index: index)
    }
    return array.bytes.map(Int.init)
  }

  /// Reads a 3-D image file `[count, rows, columns]`.
  public static func readImages(contentsOf url: URL) throws -> IDXArray {
    let array = try read(contentsOf: url)
    guard array.dimensions.count == 3 else {
      throw DatasetError.unexpectedRank(path: url.path, expected: 3, dimensions: array.dimensions)
    }
    return array
  }

  /// Reads a file, gunzipping it when it starts with `1f 8b`.
  static func readFileDecompressing(_ url: URL) throws -> Data {
    guard FileManager.default.fileExists(atPath: url.path) else { throw DatasetError.fileNotFound(path: url.path) }
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .mappedIfSafe)
    } catch {
      throw DatasetError.unreadable(path: url.path, reason: error.localizedDescription)
    }
    guard Gzip.hasGzipMagic(data) else { return data }
    do {
      return try Gzip.decompress(data)
    } catch let error as GzipError {
      throw DatasetError.corruptGzip(path: url.path, reason: error.description)
    }
  }
}
