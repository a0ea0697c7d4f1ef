import Foundation
import Testing

@testable import QuadraData

/// The fixtures written by scripts/make_image_fixtures.py.
enum ImageFixtures {
  static let directory: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
  static func data(_ name: String) throws -> Data { try Data(contentsOf: url(name)) }

  /// Every PNG colour type with its allowed bit depths.
  static let pngVariants: [(colorType: Int, depth: Int)] = [
    (0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8), (4, 8), (4, 16),
    (6, 8), (6, 16),
  ]
  static let pngNames: [String] = pngVariants.flatMap { variant in
    ["plain", "adam7"].map { "png_c\(variant.colorType)_d\(variant.depth)_\($0)" }
  }

  /// Decodes a fixture, returning the error it throws (nil if it decodes).
  static func decodingError(_ name: String, maximumPixels: Int = ImageDecoding.defaultMaximumPixels) throws
    -> ImageDecodingError?
  {
    do {
      _ = try ImageDecoding.decode(data(name), path: name, maximumPixels: maximumPixels)
      return nil
    } catch let error as ImageDecodingError {
      return error
    }
  }
}

@Suite("PNG decoding")
struct ImageDecodingPNGTests {
  @Test("every colour type x bit depth x interlace decodes to the known pixels", arguments: ImageFixtures.pngNames)
  func decodesFixture(name: String) throws {
    let image = try ImageDecoding.decode(ImageFixtures.data(name + ".png"), path: name)
    let expected = [UInt8](try ImageFixtures.data(name + ".expected"))
    let colorType = Int(name.split(separator: "_")[1].dropFirst())!
    #expect(image.width == 13 && image.height == 11)
    #expect(image.channels == (colorType == 0 || colorType == 4 ? 1 : 3))
    #expect(image.pixels.count == expected.count)
    #expect(
      image.pixels == expected,
      "\(name): first difference at \(image.pixels.indices.first { image.pixels[$0] != expected[$0] } ?? -1)")
  }

  @Test("interlaced and plain files of the same image decode identically")
  func interlaceIsTransparent() throws {
    for variant in ImageFixtures.pngVariants {
      let stem = "png_c\(variant.colorType)_d\(variant.depth)"
      let plain = try ImageDecoding.decode(ImageFixtures.data(stem + "_plain.png"), path: stem)
      let adam7 = try ImageDecoding.decode(ImageFixtures.data(stem + "_adam7.png"), path: stem)
      #expect(plain == adam7, "\(stem)")
    }
  }

  @Test("the format is sniffed from the signature, not the name")
  func sniffing() throws {
    #expect(ImageFormat.sniff(try ImageFixtures.data("png_c2_d8_plain.png")) == .png)
    #expect(ImageFormat.sniff(try ImageFixtures.data("jpeg_rgb.jpg")) == .jpeg)
    #expect(ImageFormat.sniff(Data("P6\n1 1\n255\n".utf8)) == nil)
    #expect(ImageFormat.sniff(Data()) == nil)
    #expect(throws: ImageDecodingError.unrecognizedFormat(path: "x.png")) {
      try ImageDecoding.decode(Data("GIF89a".utf8), path: "x.png")
    }
  }

  @Test("a CRC mismatch is reported with the chunk")
  func corruptCRC() throws {
    let error = try #require(try ImageFixtures.decodingError("bad_crc.png"))
    guard case .corrupt(let path, .png, let reason) = error else {
      Issue.record("\(error)")
      return
    }
    #expect(path == "bad_crc.png" && reason.contains("CRC mismatch in chunk IHDR"))
  }

  @Test("every truncation of a valid file throws, never traps")
  func truncations() throws {
    let whole = try ImageFixtures.data("png_c3_d4_adam7.png")
    for length in 0..<whole.count {
      #expect(throws: ImageDecodingError.self) { try ImageDecoding.decode(whole.prefix(length), path: "cut.png") }
    }
    // Cut inside the IDAT data: reported as truncated.
    let error = try #require(throws: ImageDecodingError.self) {
      try ImageDecoding.decode(whole.prefix(whole.count - 30), path: "cut.png")
    }
    guard case .truncated(path: "cut.png", format: .png, _) = error else {
      Issue.record("\(error)")
      return
    }
  }

  @Test("a bad filter type, too short or too long IDAT data and an unknown critical chunk are rejected")
  func structuralErrors() throws {
    let cases: [(String, String)] = [
      ("bad_filter.png", "invalid filter type 5 in row 0"),
      ("idat_long.png", "IDAT data is too long"),
      ("unknown_critical.png", "unknown critical chunk ABCD"),
      ("palette_out_of_range.png", "out of range (palette has 100 entries)"),
    ]
    for (name, message) in cases {
      let error = try #require(try ImageFixtures.decodingError(name), "\(name) decoded")
      guard case .corrupt(name, .png, let reason) = error else {
        Issue.record("\(name): \(error)")
        continue
      }
      #expect(reason.contains(message), "\(name): \(reason)")
    }
    let short = try #require(try ImageFixtures.decodingError("idat_short.png"))
    guard case .truncated("idat_short.png", .png, let reason) = short else {
      Issue.record("\(short)")
      return
    }
    #expect(reason.contains("IDAT data is too short"))
  }

  @Test("sizes are bounded before any allocation")
  func dimensionBounds() throws {
    #expect(
      try ImageFixtures.decodingError("zero_width.png")
        == .invalidDimensions(path: "zero_width.png", width: 0, height: 5))
    #expect(
      try ImageFixtures.decodingError("huge_65536.png")
        == .invalidDimensions(path: "huge_65536.png", width: 65536, height: 65536))
    // 65535² RGBA would need 16 GiB; the header alone decides (the file has no image data at all).
    #expect(
      try ImageFixtures.decodingError("huge_65535.png")
        == .tooManyPixels(path: "huge_65535.png", width: 65535, height: 65535, limit: 1 << 26))
    #expect(
      try ImageFixtures.decodingError("png_c2_d8_plain.png", maximumPixels: 142)
        == .tooManyPixels(path: "png_c2_d8_plain.png", width: 13, height: 11, limit: 142))
    #expect(try ImageFixtures.decodingError("png_c2_d8_plain.png", maximumPixels: 143) == nil)
  }

  @Test("random byte corruption throws or decodes, never traps")
  func randomCorruption() throws {
    let original = [UInt8](try ImageFixtures.data("png_c6_d16_adam7.png"))
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<300 {
      var bytes = original
      let index = Int.random(in: 8..<bytes.count, using: &generator)
      bytes[index] ^= UInt8.random(in: 1...255, using: &generator)
      // The CRC catches nearly all of these; any outcome but a crash is acceptable.
      _ = try? ImageDecoding.decode(Data(bytes), path: "fuzz.png")
    }
  }

  @Test("errors name the file and the allowed range")
  func messages() {
    let error = ImageDecodingError.invalidDimensions(path: "/data/a.png", width: 0, height: 3)
    #expect(error.description == "/data/a.png: image size 0x3 is invalid (width and height must be in 1...65535)")
    #expect(
      ImageDecodingError.jpegLibraryUnavailable(path: "b.jpg", reason: "not found").description
        .contains("b.jpg: JPEG support needs libturbojpeg.so.0: apt-get install libturbojpeg0"))
  }

  @Test("decode(contentsOf:) reads bounded regular files only")
  func fileReading() throws {
    let image = try ImageDecoding.decode(contentsOf: ImageFixtures.url("png_c0_d1_plain.png"))
    #expect(image.channels == 1 && image.width == 13)
    #expect(throws: ImageDecodingError.self) {
      try ImageDecoding.decode(contentsOf: ImageFixtures.url("png_c0_d1_plain.png"), maximumFileBytes: 10)
    }
    #expect(throws: ImageDecodingError.self) { try ImageDecoding.decode(contentsOf: URL(fileURLWithPath: "/dev/zero")) }
  }
}

@Suite("JPEG decoding (libturbojpeg)")
struct ImageDecodingJPEGTests {
  /// The pixels of a binary PPM/PGM (the JPEG fixtures' sources).
  static func netpbmPixels(_ name: String) throws -> [UInt8] {
    let data = [UInt8](try ImageFixtures.data(name))
    // "P6\n32 24\n255\n": the pixels follow the third newline.
    let headerEnd = data.indices.filter { data[$0] == 0x0A }[2] + 1
    return Array(data[headerEnd...])
  }

  @Test(
    "colour and gray JPEGs decode close to their sources",
    .enabled(if: ImageDecoding.isJPEGAvailable, "needs libturbojpeg.so.0 (apt-get install libturbojpeg0)"),
    arguments: [("jpeg_rgb", "jpeg_rgb.ppm", 3), ("jpeg_gray", "jpeg_gray.pgm", 1)])
  func decodesJPEG(name: String, source: String, channels: Int) throws {
    let image = try ImageDecoding.decode(ImageFixtures.data(name + ".jpg"), path: name)
    let reference = try Self.netpbmPixels(source)
    #expect(image.width == 32 && image.height == 24 && image.channels == channels)
    try #require(image.pixels.count == reference.count)
    let errors = zip(image.pixels, reference).map { abs(Int($0) - Int($1)) }
    let meanError = Double(errors.reduce(0, +)) / Double(errors.count)
    // Quality 95 on smooth gradients: typical errors are 1-2 levels.
    #expect(meanError < 2.5, "mean absolute error \(meanError)")
    #expect(errors.max()! <= 24, "max absolute error \(errors.max()!)")
  }

  @Test(
    "truncated or corrupt JPEGs throw",
    .enabled(if: ImageDecoding.isJPEGAvailable, "needs libturbojpeg.so.0 (apt-get install libturbojpeg0)"))
  func corruptJPEG() throws {
    let whole = try ImageFixtures.data("jpeg_rgb.jpg")
    for length in stride(from: 3, to: whole.count, by: 7) {
      #expect(throws: ImageDecodingError.self) { try ImageDecoding.decode(whole.prefix(length), path: "cut.jpg") }
    }
    var garbage = Data([0xFF, 0xD8, 0xFF])
    garbage.append(Data(repeating: 0x42, count: 200))
    let error = try #require(throws: ImageDecodingError.self) { try ImageDecoding.decode(garbage, path: "bad.jpg") }
    #expect(error.description.hasPrefix("bad.jpg: "))
  }

  @Test(
    "the pixel bound applies before decompressing",
    .enabled(if: ImageDecoding.isJPEGAvailable, "needs libturbojpeg.so.0 (apt-get install libturbojpeg0)"))
  func jpegPixelBound() throws {
    #expect(throws: ImageDecodingError.tooManyPixels(path: "a.jpg", width: 32, height: 24, limit: 100)) {
      try ImageDecoding.decode(ImageFixtures.data("jpeg_rgb.jpg"), path: "a.jpg", maximumPixels: 100)
    }
  }
}
