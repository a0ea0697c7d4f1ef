import Foundation
import QuadraData

/// A minimal PNG writer for generated fixtures: 8-bit gray or RGB, no filtering, zlib "stored" blocks.
enum TestPNG {
  static func encode(width: Int, height: Int, channels: Int, pixels: [UInt8]) -> Data {
    precondition(pixels.count == width * height * channels && (channels == 1 || channels == 3))
    var raw: [UInt8] = []
    for y in 0..<height {
      raw.append(0)  // filter type None
      raw += pixels[(y * width * channels)..<((y + 1) * width * channels)]
    }
    var zlib: [UInt8] = [0x78, 0x01]
    var offset = 0
    repeat {
      let length = Swift.min(65_535, raw.count - offset)
      zlib.append(offset + length == raw.count ? 1 : 0)
      zlib += [UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
      zlib += raw[offset..<(offset + length)]
      offset += length
    } while offset < raw.count
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in raw {
      a = (a + UInt32(byte)) % 65_521
      b = (b + a) % 65_521
    }
    zlib += bigEndian(b << 16 | a)
    var header = bigEndian(UInt32(width)) + bigEndian(UInt32(height))
    header += [8, channels == 3 ? 2 : 0, 0, 0, 0]
    return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header) + chunk("IDAT", zlib) + chunk("IEND", []))
  }

  static func bigEndian(_ value: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8((value >> $0) & 0xFF) } }

  static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let body = Array(type.utf8) + data
    return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
  }

  static let crcTable: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
  }

  static func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for byte in bytes { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
  }

  /// Writes `root/train/<class>/…` and `root/test/<class>/…`: `classes` classes of RGB images whose
  /// sizes vary (`10…13 × 9…12`) and whose colour and stripes depend on the class, plus seeded noise.
  static func writeFolder(
    at root: URL, classes: Int = 3, trainPerClass: Int = 8, testPerClass: Int = 3, seed: UInt64 = 1
  ) throws {
    var generator = RandomGenerator(seed: seed)
    for (split, count) in [("train", trainPerClass), ("test", testPerClass)] {
      for label in 0..<classes {
        let folder = root.appendingPathComponent("\(split)/class\(label)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<count {
          let width = 10 + (i + label) % 4, height = 9 + i % 4
          var pixels = [UInt8](repeating: 0, count: width * height * 3)
          for y in 0..<height {
            for x in 0..<width {
              for c in 0..<3 {
                let stripe = (x + y * label) % (label + 2) == 0 ? 90 : 0
                let base = c == label % 3 ? 120 : 30
                pixels[(y * width + x) * 3 + c] = UInt8(base + stripe + Int(generator.next() % 40))
              }
            }
          }
          try encode(width: width, height: height, channels: 3, pixels: pixels)
            .write(to: folder.appendingPathComponent("\(i).png"))
        }
      }
    }
  }
}
