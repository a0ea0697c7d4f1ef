import CQuadraZlib
import Foundation

/// Why a gzip stream could not be decompressed.
public enum GzipError: Error, Equatable, CustomStringConvertible {
  /// The input does not start with the gzip magic bytes `1f 8b`.
  case notGzip
  /// The input ended before the end of the compressed stream (after `decompressedBytes` bytes of output).
  case truncated(decompressedBytes: Int)
  /// zlib rejected the stream (bad header, bad block, CRC or length mismatch), with zlib's message.
  case corrupt(String)
  /// zlib itself failed (out of memory, version mismatch), with its status code.
  case zlibFailure(operation: String, code: Int32)
  /// The stream inflates to more than the `limit` bytes allowed (a decompression bomb, or trailing data).
  case tooLarge(limit: Int)

  public var description: String {
    switch self {
    case .notGzip:
      return "not gzip data (missing the magic bytes 1f 8b)"
    case .truncated(let produced):
      return "gzip data is truncated (the stream ended after \(produced) decompressed bytes)"
    case .corrupt(let message):
      return "gzip data is corrupt (\(message))"
    case .zlibFailure(let operation, let code):
      return "zlib \(operation) failed with status \(code)"
    case .tooLarge(let limit):
      return "gzip data decompresses to more than the \(limit) bytes allowed"
    }
  }
}

/// Gzip (RFC 1952) compression and decompression through the system zlib.
///
/// Foundation on Linux cannot inflate, and MNIST-style datasets ship as `.gz`.
public enum Gzip {
  /// Whether `data` starts with the gzip magic bytes `1f 8b`.
  public static func hasGzipMagic(_ data: Data) -> Bool {
    data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
  }

  /// Decompresses a gzip stream (concatenated members are decompressed in sequence, as `gunzip` does).
  ///
  /// zlib checks each member's CRC-32 and length trailer, so corruption surfaces as
  /// ``GzipError/corrupt(_:)`` and a cut-off file as ``GzipError/truncated(decompressedBytes:)``.
  /// At most `maximumBytes` are produced: a stream that inflates to more (a "gzip bomb", or data
  /// after the expected content) throws ``GzipError/tooLarge(limit:)`` once the limit is passed,
  /// having held no more than `maximumBytes + 1` bytes of output.
  public static func decompress(_ data: Data, maximumBytes: Int = 1 << 30) throws -> Data {
    try inflate(data, limit: maximumBytes, prefixOnly: false)
  }

  /// The first `count` decompressed bytes of a gzip stream (fewer if the stream is shorter), without
  /// inflating the rest; used to read a file's header before deciding how much may be inflated.
  public static func decompressedPrefix(_ data: Data, count: Int) throws -> Data {
    try inflate(data, limit: count, prefixOnly: true)
  }

  /// Inflates up to `limit` bytes; past it, `prefixOnly` returns the first `limit` bytes, otherwise throws.
  static func inflate(_ data: Data, limit: Int, prefixOnly: Bool) throws -> Data {
    guard hasGzipMagic(data) else { throw GzipError.notGzip }
    let limit = Swift.max(limit, 0)
    // The trailer's ISIZE (length mod 2^32) sizes the output buffer up front; it is only a hint,
    // so what it can make us reserve is capped by the limit.
    var output = Data()
    let sizeHint = data.count >= 18 ? Int(data.suffix(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }) : 0
    // Deflate expands at most ~1032:1, which also bounds what a corrupt trailer can make us reserve.
    output.reserveCapacity(Swift.min(sizeHint, limit, data.count.multipliedReportingOverflow(by: 1032).partialValue, 1 << 30))

    var stream = z_stream()
    // 16 + MAX_WBITS: expect a gzip header and trailer rather than a zlib one.
    var status = czlib_inflate_init2(&stream, 16 + MAX_WBITS)
    guard status == Z_OK else { throw GzipError.zlibFailure(operation: "inflateInit2", code: status) }
    defer { inflateEnd(&stream) }

    let chunkSize = 1 << 18
    var chunk = [UInt8](repeating: 0, count: chunkSize)
    try data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
      guard let base = input.bindMemory(to: Bytef.self).baseAddress else { return }
      stream.next_in = UnsafeMutablePointer(mutating: base)
      stream.avail_in = 0
      var remaining = input.count
      func refill() {
        // avail_in is 32-bit; feed very large inputs in slices.
        if stream.avail_in == 0 && remaining > 0 {
          let slice = Swift.min(remaining, Int(UInt32.max >> 1))
          stream.avail_in = uInt(slice)
          remaining -= slice
        }
      }
      while true {
        refill()
        // Never ask zlib for more than one byte past the limit: that byte proves the stream is longer.
        let room = Swift.min(chunkSize, limit - output.count + 1)
        let produced: Int = chunk.withUnsafeMutableBufferPointer { out in
          stream.next_out = out.baseAddress
          stream.avail_out = uInt(room)
          status = CQuadraZlib.inflate(&stream, Z_NO_FLUSH)
          return room - Int(stream.avail_out)
        }
        if output.count + produced > limit {
          if prefixOnly {
            output.append(contentsOf: chunk[0..<(limit - output.count)])
            return
          }
          throw GzipError.tooLarge(limit: limit)
        }
        if produced > 0 { output.append(contentsOf: chunk[0..<produced]) }
        switch status {
        case Z_STREAM_END:
          refill()
          if stream.avail_in == 0 { return }
          // Another gzip member follows; anything else after the stream is garbage.
          let next = stream.next_in!
          guard stream.avail_in >= 2, next[0] == 0x1F, next[1] == 0x8B else {
            throw GzipError.corrupt("\(Int(stream.avail_in) + remaining) unexpected bytes after the end of the stream")
          }
          let resetStatus = inflateReset(&stream)
          guard resetStatus == Z_OK else { throw GzipError.zlibFailure(operation: "inflateReset", code: resetStatus) }
        case Z_OK:
          continue
        case Z_BUF_ERROR:
          // No progress was possible: with output space available this means the input ran out.
          if stream.avail_in == 0 && remaining == 0 { throw GzipError.truncated(decompressedBytes: output.count) }
          continue
        case Z_DATA_ERROR, Z_NEED_DICT:
          let message = stream.msg.map { String(cString: $0) } ?? "invalid deflate data"
          throw GzipError.corrupt(message)
        default:
          throw GzipError.zlibFailure(operation: "inflate", code: status)
        }
      }
    }
    return output
  }

  /// Compresses `data` into a single gzip member (used to write `.gz` fixtures and caches).
  public static func compress(_ data: Data, level: Int32 = Z_DEFAULT_COMPRESSION) throws -> Data {
    var stream = z_stream()
    // deflateInit2 is a macro; deflateInit2_ is the function behind it.
    var status = deflateInit2_(
      &stream, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
      Int32(MemoryLayout<z_stream>.size))
    guard status == Z_OK else { throw GzipError.zlibFailure(operation: "deflateInit2", code: status) }
    defer { deflateEnd(&stream) }
    opPrecondition(data.count < Int(UInt32.max), "Gzip.compress: input of \(data.count) bytes is too large")

    var output = Data()
    let chunkSize = 1 << 16
    var chunk = [UInt8](repeating: 0, count: chunkSize)
    try data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
      let base = input.bindMemory(to: Bytef.self).baseAddress
      stream.next_in = base.map { UnsafeMutablePointer(mutating: $0) }
      stream.avail_in = uInt(input.count)
      repeat {
        let produced: Int = chunk.withUnsafeMutableBufferPointer { out in
          stream.next_out = out.baseAddress
          stream.avail_out = uInt(chunkSize)
          status = deflate(&stream, Z_FINISH)
          return chunkSize - Int(stream.avail_out)
        }
        output.append(contentsOf: chunk[0..<produced])
        guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
          throw GzipError.zlibFailure(operation: "deflate", code: status)
        }
      } while status != Z_STREAM_END
    }
    return output
  }
}
