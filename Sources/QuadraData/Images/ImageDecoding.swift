import Foundation

/// A decoded 8-bit image: `height` rows of `width` pixels of `channels` interleaved samples (row-major HWC).
///
/// `channels` is 1 (gray) or 3 (RGB). Alpha is *dropped*, not composited: gray+alpha becomes 1 channel and
/// RGBA becomes 3, keeping the colour samples exactly as stored. 16-bit samples are scaled to 8 bits with
/// rounding, `v8 = (v16 · 255 + 32767) / 65535` (integer division); 1-, 2- and 4-bit gray samples are scaled
/// to the full range, `v8 = v · 255 / (2^depth − 1)` (exact), and palette images are expanded to RGB.
public struct DecodedImage: Sendable, Equatable {
  public var width: Int
  public var height: Int
  public var channels: Int
  /// `height · width · channels` samples; sample `c` of pixel `(y, x)` is at `(y · width + x) · channels + c`.
  public var pixels: [UInt8]

  public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
    precondition(
      width >= 0 && height >= 0 && (channels == 1 || channels == 3) && pixels.count == width * height * channels,
      "DecodedImage: \(pixels.count) samples for \(width)x\(height)x\(channels)")
    self.width = width
    self.height = height
    self.channels = channels
    self.pixels = pixels
  }
}

/// The image container formats ``ImageDecoding`` reads, recognised by their leading bytes.
public enum ImageFormat: String, Sendable {
  case png
  case jpeg

  static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

  /// The format whose signature `data` starts with (PNG: `89 50 4E 47 0D 0A 1A 0A`; JPEG: the SOI
  /// marker `FF D8` followed by another marker `FF`), or nil for anything else.
  public static func sniff(_ data: Data) -> ImageFormat? {
    if data.starts(with: pngSignature) { return .png }
    if data.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
    return nil
  }
}

/// Why an image could not be decoded; every case names the file.
public enum ImageDecodingError: Error, CustomStringConvertible, LocalizedError, Equatable {
  /// The bytes are neither PNG nor JPEG.
  case unrecognizedFormat(path: String)
  /// The file could not be read (missing, not a regular file, larger than allowed).
  case unreadable(path: String, reason: String)
  /// The data ends before the image does.
  case truncated(path: String, format: ImageFormat, reason: String)
  /// The data is structurally invalid (bad chunk, checksum, filter, palette index, compressed stream …).
  case corrupt(path: String, format: ImageFormat, reason: String)
  /// A valid image using a feature this decoder does not support (e.g. CMYK JPEG).
  case unsupported(path: String, format: ImageFormat, reason: String)
  /// Width or height outside `1...65535`.
  case invalidDimensions(path: String, width: Int, height: Int)
  /// `width · height` exceeds the caller's `maximumPixels`; raised before any pixel memory is allocated.
  case tooManyPixels(path: String, width: Int, height: Int, limit: Int)
  /// libturbojpeg could not be loaded, so JPEG files cannot be decoded.
  case jpegLibraryUnavailable(path: String, reason: String)

  /// The largest width or height accepted (the PNG limit is 2³¹ − 1, JPEG's is 65535; one bound for both).
  public static let maximumDimension = 65_535

  public var description: String {
    switch self {
    case .unrecognizedFormat(let path):
      return "\(path): not a PNG or JPEG image (unrecognised signature; the file extension is not used)"
    case .unreadable(let path, let reason):
      return "\(path): cannot read the image: \(reason)"
    case .truncated(let path, let format, let reason):
      return "\(path): truncated \(format.displayName) file: \(reason)"
    case .corrupt(let path, let format, let reason):
      return "\(path): corrupt \(format.displayName) file: \(reason)"
    case .unsupported(let path, let format, let reason):
      return "\(path): unsupported \(format.displayName) file: \(reason)"
    case .invalidDimensions(let path, let width, let height):
      return
        "\(path): image size \(width)x\(height) is invalid (width and height must be in 1...\(Self.maximumDimension))"
    case .tooManyPixels(let path, let width, let height, let limit):
      return "\(path): image of \(width)x\(height) = \(width * height) pixels exceeds the limit of \(limit) pixels"
    case .jpegLibraryUnavailable(let path, let reason):
      return "\(path): JPEG support needs libturbojpeg.so.0: apt-get install libturbojpeg0 (\(reason))"
    }
  }

  public var errorDescription: String? { description }
}

extension ImageFormat {
  var displayName: String { self == .png ? "PNG" : "JPEG" }
}

/// Decoding of PNG (pure Swift over zlib) and JPEG (libturbojpeg, loaded at run time) into ``DecodedImage``s.
public enum ImageDecoding {
  /// The default bound on `width · height`: 64 Mi pixels (192 MiB of RGB).
  public static let defaultMaximumPixels = 1 << 26

  /// Decodes PNG or JPEG, chosen by the data's signature (``ImageFormat/sniff(_:)``), not by extension.
  ///
  /// - Parameters:
  ///   - data: the file's bytes.
  ///   - path: names the file in errors only.
  ///   - maximumPixels: bounds `width · height`; checked from the header before any pixel memory is allocated.
  /// - Throws: ``ImageDecodingError``.
  public static func decode(_ data: Data, path: String, maximumPixels: Int = 1 << 26) throws -> DecodedImage {
    switch ImageFormat.sniff(data) {
    case .png: return try PNGDecoder.decode(data, path: path, maximumPixels: maximumPixels)
    case .jpeg: return try JPEGDecoder.decode(data, path: path, maximumPixels: maximumPixels)
    case nil:
      if data.count < ImageFormat.pngSignature.count, ImageFormat.pngSignature.starts(with: data), !data.isEmpty {
        throw ImageDecodingError.truncated(path: path, format: .png, reason: "the file ends inside the signature")
      }
      throw ImageDecodingError.unrecognizedFormat(path: path)
    }
  }

  /// Reads and decodes an image file of at most `maximumFileBytes` bytes (default 256 MiB).
  public static func decode(
    contentsOf url: URL, maximumPixels: Int = 1 << 26, maximumFileBytes: Int = 1 << 28
  ) throws -> DecodedImage {
    let data: Data
    do {
      data = try BoundedFile.read(url, maximumBytes: maximumFileBytes)
    } catch let error as BoundedFileError {
      throw ImageDecodingError.unreadable(path: url.path, reason: error.reason)
    }
    return try decode(data, path: url.path, maximumPixels: maximumPixels)
  }

  /// Throws unless `width` and `height` are in `1...65535` and their product is at most `maximumPixels`.
  static func checkDimensions(width: Int, height: Int, maximumPixels: Int, path: String) throws {
    guard (1...ImageDecodingError.maximumDimension).contains(width),
      (1...ImageDecodingError.maximumDimension).contains(height)
    else { throw ImageDecodingError.invalidDimensions(path: path, width: width, height: height) }
    guard width * height <= maximumPixels else {
      throw ImageDecodingError.tooManyPixels(path: path, width: width, height: height, limit: maximumPixels)
    }
  }
}
