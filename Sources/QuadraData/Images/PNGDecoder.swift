import CQuadraZlib
import Foundation

/// A strict PNG (ISO/IEC 15948) decoder: every colour type and bit depth, Adam7 interlacing, CRC-checked chunks.
///
/// Memory is bounded by the header: `width · height` is checked against the caller's limit before anything
/// is allocated, and the concatenated IDAT stream is inflated into a buffer of exactly the size the header
/// implies (`Σ rows · (1 + ⌈width · bitsPerPixel / 8⌉)` over the interlace passes); a stream that would
/// produce more or fewer bytes is rejected. Ancillary chunks (including tRNS, since alpha is dropped) are
/// skipped after their CRC check; unknown critical chunks are errors.
enum PNGDecoder {
  struct Header {
    var width: Int
    var height: Int
    var bitDepth: Int
    var colorType: Int
    var interlaced: Bool

    /// Samples per pixel as stored: gray 1, RGB 3, palette index 1, gray+alpha 2, RGBA 4.
    var storedSamples: Int { [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colorType]! }
    var bitsPerPixel: Int { storedSamples * bitDepth }
    /// The filter's byte distance to the "left" pixel: whole bytes per pixel, at least 1.
    var filterStride: Int { max(1, bitsPerPixel / 8) }
    /// Gray and gray+alpha decode to one channel; RGB, RGBA and palette to three.
    var outputChannels: Int { colorType == 0 || colorType == 4 ? 1 : 3 }
    func rowBytes(width: Int) -> Int { (width * bitsPerPixel + 7) / 8 }
  }

  /// One Adam7 pass (or the whole image when not interlaced): the pixels at `(y0 + i·dy, x0 + j·dx)`.
  struct Pass {
    var x0: Int, y0: Int, dx: Int, dy: Int
    var width: Int, height: Int
  }

  static let adam7: [(x0: Int, y0: Int, dx: Int, dy: Int)] = [
    (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2),
  ]

  /// The passes with at least one pixel, in stream order.
  static func passes(for header: Header) -> [Pass] {
    guard header.interlaced else {
      return [Pass(x0: 0, y0: 0, dx: 1, dy: 1, width: header.width, height: header.height)]
    }
    return adam7.compactMap { p in
      let width = (header.width - p.x0 + p.dx - 1) / p.dx
      let height = (header.height - p.y0 + p.dy - 1) / p.dy
      return width > 0 && height > 0 ? Pass(x0: p.x0, y0: p.y0, dx: p.dx, dy: p.dy, width: width, height: height) : nil
    }
  }

  static func decode(_ data: Data, path: String, maximumPixels: Int) throws -> DecodedImage {
    let bytes = [UInt8](data)
    return try bytes.withUnsafeBufferPointer { try decode(bytes: $0, path: path, maximumPixels: maximumPixels) }
  }

  static func decode(bytes: UnsafeBufferPointer<UInt8>, path: String, maximumPixels: Int) throws -> DecodedImage {
    func corrupt(_ reason: String) -> ImageDecodingError { .corrupt(path: path, format: .png, reason: reason) }
    func truncated(_ reason: String) -> ImageDecodingError { .truncated(path: path, format: .png, reason: reason) }
    func readUInt32(_ offset: Int) -> UInt32 {
      UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
        | UInt32(bytes[offset + 3])
    }

    let signature = ImageFormat.pngSignature
    guard bytes.count >= signature.count else { throw truncated("the file ends inside the signature") }
    guard bytes.starts(with: signature) else { throw ImageDecodingError.unrecognizedFormat(path: path) }

    var offset = signature.count
    var header: Header?
    var palette: [UInt8] = []
    // (start, count) ranges of the IDAT payloads, concatenated only when inflating.
    var imageData: [(start: Int, count: Int)] = []
    var sawIDAT = false
    var idatEnded = false
    var sawIEND = false

    while !sawIEND {
      guard offset + 8 <= bytes.count else {
        throw truncated(header == nil ? "no IHDR chunk" : "the file ends before the IEND chunk")
      }
      let length = Int(readUInt32(offset))
      let typeBytes = Array(bytes[(offset + 4)..<(offset + 8)])
      let type = String(decoding: typeBytes, as: UTF8.self)
      guard typeBytes.allSatisfy({ (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else {
        throw corrupt("invalid chunk type bytes \(typeBytes) at offset \(offset + 4)")
      }
      guard length <= Int(Int32.max) else { throw corrupt("chunk \(type) declares \(length) bytes (over 2^31 - 1)") }
      let dataStart = offset + 8
      guard dataStart + length + 4 <= bytes.count else {
        throw truncated(
          "chunk \(type) needs \(length + 4) bytes after offset \(dataStart), the file has \(bytes.count - dataStart)")
      }
      let storedCRC = readUInt32(dataStart + length)
      let computedCRC = UInt32(crc32(0, bytes.baseAddress! + offset + 4, uInt(length + 4)))
      guard storedCRC == computedCRC else {
        throw corrupt(
          "CRC mismatch in chunk \(type) at offset \(offset) (stored \(storedCRC), computed \(computedCRC))")
      }
      offset = dataStart + length + 4

      if header == nil && type != "IHDR" { throw corrupt("the first chunk is \(type), not IHDR") }
      if sawIDAT && type != "IDAT" { idatEnded = true }
      switch type {
      case "IHDR":
        guard header == nil else { throw corrupt("more than one IHDR chunk") }
        guard length == 13 else { throw corrupt("IHDR has \(length) bytes, not 13") }
        let width = Int(readUInt32(dataStart))
        let height = Int(readUInt32(dataStart + 4))
        let bitDepth = Int(bytes[dataStart + 8])
        let colorType = Int(bytes[dataStart + 9])
        let allowedDepths: [Int: [Int]] = [
          0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16],
        ]
        guard let depths = allowedDepths[colorType] else {
          throw corrupt("colour type \(colorType) is invalid (allowed: 0, 2, 3, 4, 6)")
        }
        guard depths.contains(bitDepth) else {
          throw corrupt("bit depth \(bitDepth) is invalid for colour type \(colorType) (allowed: \(depths))")
        }
        guard bytes[dataStart + 10] == 0 else { throw corrupt("compression method \(bytes[dataStart + 10]) (only 0)") }
        guard bytes[dataStart + 11] == 0 else { throw corrupt("filter method \(bytes[dataStart + 11]) (only 0)") }
        let interlace = bytes[dataStart + 12]
        guard interlace <= 1 else { throw corrupt("interlace method \(interlace) (allowed: 0, 1)") }
        try ImageDecoding.checkDimensions(width: width, height: height, maximumPixels: maximumPixels, path: path)
        header = Header(
          width: width, height: height, bitDepth: bitDepth, colorType: colorType, interlaced: interlace == 1)
      case "PLTE":
        guard !sawIDAT else { throw corrupt("PLTE after IDAT") }
        guard palette.isEmpty else { throw corrupt("more than one PLTE chunk") }
        guard length % 3 == 0, (3...768).contains(length) else {
          throw corrupt("PLTE has \(length) bytes (must be 3...768 and a multiple of 3)")
        }
        guard header!.colorType != 0 && header!.colorType != 4 else {
          throw corrupt("PLTE chunk in a gray image (colour type \(header!.colorType))")
        }
        palette = Array(bytes[dataStart..<(dataStart + length)])
      case "IDAT":
        guard !idatEnded else { throw corrupt("IDAT chunks are not consecutive") }
        guard header!.colorType != 3 || !palette.isEmpty else {
          throw corrupt("palette image without a PLTE chunk before IDAT")
        }
        sawIDAT = true
        imageData.append((dataStart, length))
      case "IEND":
        sawIEND = true
      default:
        // Bit 5 of the first byte set (lower case) marks an ancillary chunk, safe to skip.
        guard typeBytes[0] & 0x20 != 0 else { throw corrupt("unknown critical chunk \(type)") }
      }
    }
    guard let header else { throw truncated("no IHDR chunk") }
    guard sawIDAT else { throw corrupt("no IDAT chunk") }

    let passes = passes(for: header)
    var expectedSize = 0
    for pass in passes { expectedSize += pass.height * (1 + header.rowBytes(width: pass.width)) }
    var filtered = try inflate(bytes: bytes, ranges: imageData, expectedSize: expectedSize, path: path)

    var pixels = [UInt8](repeating: 0, count: header.width * header.height * header.outputChannels)
    try filtered.withUnsafeMutableBufferPointer { stream in
      try pixels.withUnsafeMutableBufferPointer { output in
        var passStart = 0
        for pass in passes {
          let rowBytes = header.rowBytes(width: pass.width)
          for row in 0..<pass.height {
            let rowStart = passStart + row * (rowBytes + 1)
            let filterType = stream[rowStart]
            let current = stream.baseAddress! + rowStart + 1
            let previous: UnsafeMutablePointer<UInt8>? = row == 0 ? nil : current - (rowBytes + 1)
            guard unfilter(filterType, row: current, previous: previous, count: rowBytes, stride: header.filterStride)
            else {
              throw corrupt(
                "invalid filter type \(filterType) in row \(row)\(header.interlaced ? " of an Adam7 pass" : "")")
            }
            try expand(
              row: UnsafeBufferPointer(start: current, count: rowBytes), header: header, palette: palette,
              pass: pass, y: pass.y0 + row * pass.dy, into: output, path: path)
          }
          passStart += pass.height * (rowBytes + 1)
        }
      }
    }
    return DecodedImage(width: header.width, height: header.height, channels: header.outputChannels, pixels: pixels)
  }

  /// Inflates the concatenated zlib stream of `ranges` into exactly `expectedSize` bytes.
  static func inflate(
    bytes: UnsafeBufferPointer<UInt8>, ranges: [(start: Int, count: Int)], expectedSize: Int, path: String
  ) throws -> [UInt8] {
    // One byte more than expected: if the stream fills it, it holds more data than the header implies.
    var output = [UInt8](repeating: 0, count: expectedSize + 1)
    var stream = z_stream()
    var status = czlib_inflate_init2(&stream, MAX_WBITS)
    guard status == Z_OK else {
      throw ImageDecodingError.corrupt(
        path: path, format: .png, reason: "zlib inflateInit2 failed with status \(status)")
    }
    defer { inflateEnd(&stream) }
    func failure(_ reason: String) -> ImageDecodingError { .corrupt(path: path, format: .png, reason: reason) }

    var produced = 0
    var ended = false
    try output.withUnsafeMutableBufferPointer { out in
      for range in ranges where range.count > 0 {
        guard !ended else { throw failure("IDAT data continues after the end of the zlib stream") }
        stream.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress! + range.start)
        stream.avail_in = uInt(range.count)
        while stream.avail_in > 0 && !ended {
          stream.next_out = out.baseAddress! + produced
          stream.avail_out = uInt(out.count - produced)
          let room = Int(stream.avail_out)
          status = CQuadraZlib.inflate(&stream, Z_NO_FLUSH)
          produced += room - Int(stream.avail_out)
          if produced > expectedSize {
            throw failure(
              "IDAT data is too long: it inflates to more than the \(expectedSize) bytes the header implies")
          }
          switch status {
          case Z_STREAM_END: ended = true
          case Z_OK, Z_BUF_ERROR: continue
          default:
            let message = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
            throw failure("IDAT data is not a valid zlib stream (\(message))")
          }
        }
      }
    }
    output.removeLast()
    guard produced == expectedSize else {
      throw ImageDecodingError.truncated(
        path: path, format: .png,
        reason: "IDAT data is too short: it inflates to \(produced) of the \(expectedSize) bytes the header implies")
    }
    guard ended else {
      throw ImageDecodingError.truncated(
        path: path, format: .png, reason: "the zlib stream in IDAT does not end (missing Adler-32 checksum)")
    }
    return output
  }

  /// Reverses one row's filter in place; false for an unknown filter type.
  ///
  /// With `a` the byte `stride` to the left, `b` the byte above and `c` the one above-left (0 outside
  /// the image), the filters add to each byte: Sub `a`, Up `b`, Average `⌊(a + b) / 2⌋`, Paeth whichever
  /// of `a`, `b`, `c` is closest to `a + b − c` (ties: a, then b). The first row has no row above, so
  /// Up is None, Average adds `⌊a / 2⌋` and Paeth equals Sub there; those cases skip the upper row.
  @inline(__always)
  static func unfilter(
    _ filterType: UInt8, row: UnsafeMutablePointer<UInt8>, previous: UnsafeMutablePointer<UInt8>?, count: Int,
    stride: Int
  ) -> Bool {
    let head = min(stride, count)
    switch (filterType, previous) {
    case (0, _), (2, nil):
      break
    case (1, _), (4, nil):  // Sub
      if count > stride { for i in stride..<count { row[i] &+= row[i - stride] } }
    case (2, let up?):  // Up
      for i in 0..<count { row[i] &+= up[i] }
    case (3, nil):  // Average without a row above
      if count > stride { for i in stride..<count { row[i] &+= row[i - stride] >> 1 } }
    case (3, let up?):  // Average
      for i in 0..<head { row[i] &+= up[i] >> 1 }
      if count > stride {
        for i in stride..<count { row[i] &+= UInt8((UInt16(row[i - stride]) + UInt16(up[i])) >> 1) }
      }
    case (4, let up?):  // Paeth; in the first pixel a = c = 0, so the predictor is b
      for i in 0..<head { row[i] &+= up[i] }
      if count > stride {
        for i in stride..<count {
          let a = Int(row[i - stride])
          let b = Int(up[i])
          let c = Int(up[i - stride])
          let pa = abs(b - c)
          let pb = abs(a - c)
          let pc = abs(a + b - 2 * c)
          row[i] &+= UInt8(truncatingIfNeeded: pa <= pb && pa <= pc ? a : (pb <= pc ? b : c))
        }
      }
    default:
      return false
    }
    return true
  }

  /// Writes one unfiltered row of `pass` (at image row `y`) into the 8-bit output, dropping alpha.
  static func expand(
    row: UnsafeBufferPointer<UInt8>, header: Header, palette: [UInt8], pass: Pass, y: Int,
    into output: UnsafeMutableBufferPointer<UInt8>, path: String
  ) throws {
    let channels = header.outputChannels
    let samples = header.storedSamples
    let depth = header.bitDepth
    var target = (y * header.width + pass.x0) * channels
    let targetStep = pass.dx * channels
    switch depth {
    case 8 where header.colorType != 3:
      var source = 0
      for _ in 0..<pass.width {
        for c in 0..<channels { output[target + c] = row[source + c] }
        source += samples
        target += targetStep
      }
    case 16:
      var source = 0
      for _ in 0..<pass.width {
        for c in 0..<channels {
          let value = UInt32(row[source + 2 * c]) << 8 | UInt32(row[source + 2 * c + 1])
          output[target + c] = UInt8((value * 255 + 32767) / 65535)
        }
        source += 2 * samples
        target += targetStep
      }
    default:
      // 1/2/4/8-bit palette indices or 1/2/4-bit gray, packed most significant bits first.
      let mask = UInt8((1 << depth) - 1)
      let paletteCount = palette.count / 3
      for x in 0..<pass.width {
        let bit = x * depth
        let value = (row[bit >> 3] >> UInt8(8 - depth - (bit & 7))) & mask
        if header.colorType == 3 {
          guard Int(value) < paletteCount else {
            throw ImageDecodingError.corrupt(
              path: path, format: .png,
              reason:
                "palette index \(value) at pixel (\(pass.x0 + x * pass.dx), \(y)) is out of range (palette has \(paletteCount) entries)"
            )
          }
          let entry = Int(value) * 3
          output[target] = palette[entry]
          output[target + 1] = palette[entry + 1]
          output[target + 2] = palette[entry + 2]
        } else {
          output[target] = value * (255 / mask)
        }
        target += targetStep
      }
    }
  }
}
