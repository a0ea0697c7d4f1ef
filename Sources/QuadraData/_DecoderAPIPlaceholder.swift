import Foundation

// TEMPORARY: the decoder API that the `imagedecode` branch implements in Sources/QuadraData/Images/ and
// Sources/QuadraData/NumPy/. The datasets code against it; the lead deletes this file at merge. Until
// then every entry point throws `DecoderUnavailableError`, so folder and .npz datasets fail with a
// message instead of decoding.

/// A decoded image: 8-bit pixels, rows top to bottom, channels interleaved (HWC).
public struct DecodedImage: Sendable, Equatable {
  public var width: Int
  public var height: Int
  /// 1 (gray) or 3 (RGB).
  public var channels: Int
  /// `height × width × channels` bytes, HWC.
  public var pixels: [UInt8]

  public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
    self.width = width
    self.height = height
    self.channels = channels
    self.pixels = pixels
  }
}

/// The image decoders are not part of this build yet.
public struct DecoderUnavailableError: Error, CustomStringConvertible {
  public var path: String
  public var description: String {
    "\(path): image and .npz decoding is not available in this build (it arrives with the imagedecode branch)"
  }
}

public enum ImageDecoding {
  public static func decode(_ data: Data, path: String, maximumPixels: Int = 1 << 26) throws -> DecodedImage {
    throw DecoderUnavailableError(path: path)
  }
}

public enum NumPyArchive {
  public static func read(contentsOf url: URL, maximumBytes: Int) throws -> [String: NumPyArray] {
    throw DecoderUnavailableError(path: url.path)
  }
}
