import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The TurboJPEG API of libjpeg-turbo, resolved with `dlopen`/`dlsym` at first use.
///
/// Loading at run time keeps the build free of new headers and libraries: only decoding a JPEG needs
/// `libturbojpeg.so.0` (Debian/Ubuntu package `libturbojpeg0`). The functions are resolved once (a
/// `static let`, which Swift initialises thread-safely); each decode uses its own handle, because a
/// TurboJPEG handle must not be shared between threads.
final class TurboJPEG: Sendable {
  typealias InitDecompress = @convention(c) () -> UnsafeMutableRawPointer?
  typealias DecompressHeader3 =
    @convention(c) (
      UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, CUnsignedLong,
      UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?,
      UnsafeMutablePointer<Int32>?
    ) -> Int32
  typealias Decompress2 =
    @convention(c) (
      UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, CUnsignedLong, UnsafeMutablePointer<UInt8>?,
      Int32, Int32, Int32, Int32, Int32
    ) -> Int32
  typealias Destroy = @convention(c) (UnsafeMutableRawPointer?) -> Int32
  typealias GetErrorStr2 = @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutablePointer<CChar>?

  // From turbojpeg.h (stable since libjpeg-turbo 1.2).
  static let pixelFormatRGB: Int32 = 0  // TJPF_RGB
  static let pixelFormatGray: Int32 = 6  // TJPF_GRAY
  static let colorspaceGray: Int32 = 2  // TJCS_GRAY
  static let colorspaceCMYK: Int32 = 3  // TJCS_CMYK
  static let colorspaceYCCK: Int32 = 4  // TJCS_YCCK

  /// The library names tried in order (Linux soname first, then macOS/Homebrew).
  static let libraryNames = ["libturbojpeg.so.0", "libturbojpeg.0.dylib", "libturbojpeg.dylib"]

  nonisolated(unsafe) let initDecompress: InitDecompress
  nonisolated(unsafe) let decompressHeader3: DecompressHeader3
  nonisolated(unsafe) let decompress2: Decompress2
  nonisolated(unsafe) let destroy: Destroy
  nonisolated(unsafe) let errorString: GetErrorStr2

  private init(handle: UnsafeMutableRawPointer) throws {
    func symbol<F>(_ name: String, as type: F.Type) throws -> F {
      guard let address = dlsym(handle, name) else {
        throw TurboJPEGLoadError(reason: "the library lacks the symbol \(name) (libjpeg-turbo 1.4 or newer is needed)")
      }
      return unsafeBitCast(address, to: type)
    }
    initDecompress = try symbol("tjInitDecompress", as: InitDecompress.self)
    decompressHeader3 = try symbol("tjDecompressHeader3", as: DecompressHeader3.self)
    decompress2 = try symbol("tjDecompress2", as: Decompress2.self)
    destroy = try symbol("tjDestroy", as: Destroy.self)
    errorString = try symbol("tjGetErrorStr2", as: GetErrorStr2.self)
  }

  struct TurboJPEGLoadError: Error { var reason: String }

  /// The loaded library, or why it could not be loaded; computed once per process.
  static let shared: Result<TurboJPEG, TurboJPEGLoadError> = {
    var reasons: [String] = []
    for name in libraryNames {
      // The handle is never closed: the library stays loaded for the life of the process.
      guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
        reasons.append(dlerror().map { String(cString: $0) } ?? "\(name): not found")
        continue
      }
      do {
        return .success(try TurboJPEG(handle: handle))
      } catch let error as TurboJPEGLoadError {
        reasons.append("\(name): \(error.reason)")
      } catch {
        reasons.append("\(name): \(error)")
      }
    }
    return .failure(TurboJPEGLoadError(reason: reasons.first ?? "not found"))
  }()

  func message(_ handle: UnsafeMutableRawPointer?) -> String {
    errorString(handle).map { String(cString: $0) } ?? "unknown TurboJPEG error"
  }
}

/// JPEG decoding through TurboJPEG: gray JPEGs to 1 channel, everything else (YCbCr, RGB) to 3.
enum JPEGDecoder {
  static var isAvailable: Bool {
    if case .success = TurboJPEG.shared { return true }
    return false
  }

  static func decode(_ data: Data, path: String, maximumPixels: Int) throws -> DecodedImage {
    let library: TurboJPEG
    switch TurboJPEG.shared {
    case .success(let loaded): library = loaded
    case .failure(let error): throw ImageDecodingError.jpegLibraryUnavailable(path: path, reason: error.reason)
    }
    guard let handle = library.initDecompress() else {
      throw ImageDecodingError.corrupt(
        path: path, format: .jpeg, reason: "tjInitDecompress failed: \(library.message(nil))")
    }
    defer { _ = library.destroy(handle) }

    return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
      let input = raw.bindMemory(to: UInt8.self).baseAddress
      let size = CUnsignedLong(raw.count)
      var width: Int32 = 0
      var height: Int32 = 0
      var subsampling: Int32 = 0
      var colorspace: Int32 = 0
      guard library.decompressHeader3(handle, input, size, &width, &height, &subsampling, &colorspace) == 0 else {
        throw failure(library.message(handle), path: path)
      }
      try ImageDecoding.checkDimensions(
        width: Int(width), height: Int(height), maximumPixels: maximumPixels, path: path)
      if colorspace == TurboJPEG.colorspaceCMYK || colorspace == TurboJPEG.colorspaceYCCK {
        throw ImageDecodingError.unsupported(
          path: path, format: .jpeg, reason: "CMYK/YCCK colour (only gray, YCbCr and RGB JPEGs are decoded)")
      }
      let gray = colorspace == TurboJPEG.colorspaceGray
      let channels = gray ? 1 : 3
      var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * channels)
      let status = pixels.withUnsafeMutableBufferPointer { output in
        library.decompress2(
          handle, input, size, output.baseAddress, width, Int32(Int(width) * channels), height,
          gray ? TurboJPEG.pixelFormatGray : TurboJPEG.pixelFormatRGB, 0)
      }
      // TurboJPEG also returns -1 for warnings such as "Premature end of JPEG file": a truncated or
      // damaged file must not pass as an image with gray bands.
      guard status == 0 else { throw failure(library.message(handle), path: path) }
      return DecodedImage(width: Int(width), height: Int(height), channels: channels, pixels: pixels)
    }
  }

  static func failure(_ message: String, path: String) -> ImageDecodingError {
    let lowered = message.lowercased()
    if lowered.contains("premature end") || lowered.contains("truncated") || lowered.contains("no more data") {
      return .truncated(path: path, format: .jpeg, reason: message)
    }
    return .corrupt(path: path, format: .jpeg, reason: message)
  }
}

extension ImageDecoding {
  /// Whether JPEG decoding is available, i.e. libturbojpeg (`libturbojpeg.so.0`) could be loaded.
  public static var isJPEGAvailable: Bool { JPEGDecoder.isAvailable }
}
