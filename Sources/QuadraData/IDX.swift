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

  /// The largest payload accepted (4 GiB): Fashion-MNIST's biggest file has 47 MB. Payloads must
  /// also fit the process's memory limit (``QuadraCore/MemoryBudget``).
  public static let maximumPayloadBytes = 1 << 32
  /// The longest header: magic, type, rank and 255 dimensions.
  static let maximumHeaderBytes = 4 + 4 * 255

  /// A parsed header: the dimensions and the exact file size they announce.
  struct Header {
    var dimensions: [Int]
    var headerSize: Int
    /// Header plus payload: the exact size of a well-formed file.
    var fileSize: Int
  }

  /// Reads an IDX file, decompressing it first if it is gzipped.
  ///
  /// A gzipped file is inflated in two steps: first only its header, whose dimensions give the exact
  /// decompressed size (checked for overflow, against ``maximumPayloadBytes`` and the memory limit),
  /// then the whole stream, but never more than that size, so a small file that inflates to gigabytes
  /// (a gzip bomb, or data after the payload) is an error before it can exhaust memory.
  public static func read(contentsOf url: URL) throws -> IDXArray {
    try decode(readFile(url), path: url.path)
  }

  /// Parses the bytes of an IDX file, raw or gzipped (recognized by the magic bytes `1f 8b`);
  /// `path` only names the source in errors. See ``read(contentsOf:)`` for how gzip is bounded.
  public static func decode(_ data: Data, path: String) throws -> IDXArray {
    guard Gzip.hasGzipMagic(data) else { return try parse(data, path: path) }
    let header: Header
    do {
      let prefix = try Gzip.decompressedPrefix(data, count: maximumHeaderBytes)
      header = try parseHeader(prefix, path: path)
    } catch let error as GzipError {
      throw DatasetError.corruptGzip(path: path, reason: error.description)
    }
    let full: Data
    do {
      full = try Gzip.decompress(data, maximumBytes: header.fileSize)
    } catch GzipError.tooLarge {
      throw DatasetError.invalidHeader(
        path: path,
        reason: "decompresses to more than the \(header.fileSize) bytes its IDX header announces "
          + "(dimensions \(header.dimensions)); the file has trailing data or a wrong header")
    } catch let error as GzipError {
      throw DatasetError.corruptGzip(path: path, reason: error.description)
    }
    return try parse(full, path: path)
  }

  /// Parses IDX bytes; `path` only names the source in errors.
  ///
  /// The payload must match the header exactly: a shorter file is ``DatasetError/truncated(path:expectedBytes:foundBytes:)``,
  /// a longer one ``DatasetError/trailingBytes(path:expectedBytes:foundBytes:)``.
  public static func parse(_ data: Data, path: String) throws -> IDXArray {
    // Only the header is copied out; the payload is copied once, into the result.
    let header = try parseHeader(data.prefix(maximumHeaderBytes), path: path)
    let fileSize = data.count
    if fileSize < header.fileSize {
      throw DatasetError.truncated(path: path, expectedBytes: header.fileSize, foundBytes: fileSize)
    }
    if fileSize > header.fileSize {
      throw DatasetError.trailingBytes(path: path, expectedBytes: header.fileSize, foundBytes: fileSize)
    }
    return IDXArray(dimensions: header.dimensions, bytes: [UInt8](data.dropFirst(header.headerSize)))
  }

  /// Parses the header at the start of `prefix` (the file's first bytes, or all of a shorter file):
  /// magic, element type, rank and dimensions; checks the announced size for overflow, against
  /// ``maximumPayloadBytes`` and against the memory limit.
  static func parseHeader(_ prefix: Data, path: String) throws -> Header {
    let header = [UInt8](prefix.prefix(maximumHeaderBytes))
    let available = header.count
    guard available >= 4 else {
      if available >= 2, header[0] != 0 || header[1] != 0 { throw DatasetError.badMagic(path: path, bytes: header) }
      throw DatasetError.truncated(path: path, expectedBytes: 4, foundBytes: available)
    }
    guard header[0] == 0, header[1] == 0 else {
      throw DatasetError.badMagic(path: path, bytes: Array(header[0..<4]))
    }
    guard header[2] == unsignedByteType else { throw DatasetError.unsupportedDataType(path: path, code: header[2]) }
    let rank = Int(header[3])
    let headerSize = 4 + 4 * rank
    guard available >= headerSize else {
      throw DatasetError.truncated(path: path, expectedBytes: headerSize, foundBytes: available)
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
    guard !overflow, payloadSize <= maximumPayloadBytes else {
      throw DatasetError.invalidHeader(
        path: path,
        reason: "IDX dimensions \(dimensions) describe \(overflow ? "more than \(Int.max)" : "\(payloadSize)") bytes; "
          + "at most \(maximumPayloadBytes) are supported")
    }
    try MemoryBudget.check(payloadSize, for: "\(path) (IDX dimensions \(dimensions))")
    return Header(dimensions: dimensions, headerSize: headerSize, fileSize: headerSize + payloadSize)
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

  /// Image rows and columns accepted by ``readImages(contentsOf:)``.
  public static let imageSideRange = 1...4096

  /// Reads a 3-D image file `[count, rows, columns]` with at least one image and rows and columns
  /// in ``imageSideRange``.
  public static func readImages(contentsOf url: URL) throws -> IDXArray {
    let array = try read(contentsOf: url)
    guard array.dimensions.count == 3 else {
      throw DatasetError.unexpectedRank(path: url.path, expected: 3, dimensions: array.dimensions)
    }
    let (count, rows, columns) = (array.dimensions[0], array.dimensions[1], array.dimensions[2])
    guard count >= 1, imageSideRange.contains(rows), imageSideRange.contains(columns) else {
      throw DatasetError.invalidHeader(
        path: url.path,
        reason: "IDX dimensions \(array.dimensions): need at least 1 image and rows and columns in "
          + "\(imageSideRange.lowerBound)...\(imageSideRange.upperBound)")
    }
    return array
  }

  /// Reads a regular file (memory-mapped when possible) of at most 4 GiB + its header; errors name it.
  static func readFile(_ url: URL) throws -> Data {
    guard FileManager.default.fileExists(atPath: url.path) else { throw DatasetError.fileNotFound(path: url.path) }
    do {
      // A raw file is at most its header plus the largest payload; a gzipped one is smaller still.
      return try BoundedFile.read(url, maximumBytes: maximumHeaderBytes + maximumPayloadBytes)
    } catch let error as BoundedFileError {
      throw DatasetError.unreadable(path: url.path, reason: error.reason)
    }
  }

  /// Reads a file, gunzipping it when it starts with `1f 8b`, to at most `maximumBytes` decompressed bytes.
  static func readFileDecompressing(_ url: URL, maximumBytes: Int) throws -> Data {
    let data = try readFile(url)
    guard Gzip.hasGzipMagic(data) else { return data }
    do {
      return try Gzip.decompress(data, maximumBytes: maximumBytes)
    } catch let error as GzipError {
      throw DatasetError.corruptGzip(path: url.path, reason: error.description)
    }
  }
}
