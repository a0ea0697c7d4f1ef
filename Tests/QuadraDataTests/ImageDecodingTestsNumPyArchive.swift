import Foundation
import Testing
import ZIPFoundation

@testable import QuadraData

@Suite("NumPy .npz archives")
struct NumPyArchiveTests {
  /// A fresh temporary directory for one test (tests run in parallel).
  static func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("npz-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  /// Writes a zip with the given members (name, bytes), each stored or deflated.
  static func writeZip(_ url: URL, members: [(String, Data)], compression: CompressionMethod) throws {
    let archive = try Archive(url: url, accessMode: .create)
    for (name, contents) in members {
      try archive.addEntry(
        with: name, type: .file, uncompressedSize: Int64(contents.count), compressionMethod: compression
      ) { (position: Int64, size: Int) in
        contents.subdata(in: Int(position)..<(Int(position) + size))
      }
    }
  }

  static let images = NumPyArray(shape: [2, 2, 3], elements: .uint8(Array(0..<12)))
  static let labels = NumPyArray(shape: [3], elements: .float32([1.5, -2, 0.25]))

  @Test("stored and deflated archives read back into the arrays written", arguments: [false, true])
  func roundTrip(deflated: Bool) throws {
    let directory = try Self.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("data.npz")
    try Self.writeZip(
      url, members: [("x.npy", Self.images.encoded()), ("y.npy", Self.labels.encoded())],
      compression: deflated ? .deflate : .none)
    let arrays = try NumPyArchive.read(contentsOf: url, maximumBytes: 1 << 20)
    #expect(arrays == ["x": Self.images, "y": Self.labels])
  }

  @Test("an archive written by numpy.savez_compressed reads")
  func numpyWritten() throws {
    let arrays = try NumPyArchive.read(contentsOf: ImageFixtures.url("numpy_savez.npz"), maximumBytes: 1 << 20)
    #expect(arrays["images"] == NumPyArray(shape: [2, 3, 4], elements: .uint8(Array(0..<24))))
    #expect(arrays["labels"] == NumPyArray(shape: [3], elements: .float32([0.5, -1.25, 3.0])))
    #expect(arrays.count == 2)
  }

  @Test("a zip bomb (1 GiB of zeros) stops inflating at the limit")
  func zipBomb() throws {
    let directory = try Self.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("bomb.npz")
    let archive = try Archive(url: url, accessMode: .create)
    let chunk = Data(count: 1 << 20)
    try archive.addEntry(
      with: "bomb.npy", type: .file, uncompressedSize: Int64(1 << 30), compressionMethod: .deflate, bufferSize: 1 << 20
    ) { (_: Int64, size: Int) in
      size == chunk.count ? chunk : Data(count: size)
    }
    let compressedSize = try BoundedFile.regularFileSize(url.path)
    #expect(compressedSize < 4 << 20)
    let limit = 1 << 20
    #expect(throws: NumPyArchiveError.tooLarge(path: url.path, member: "bomb.npy", limit: limit)) {
      try NumPyArchive.read(contentsOf: url, maximumBytes: limit)
    }
  }

  @Test("the byte limit covers all members together")
  func totalLimit() throws {
    let directory = try Self.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("two.npz")
    let member = NumPyArray(shape: [600], elements: .uint8(Array(repeating: 7, count: 600))).encoded()
    try Self.writeZip(url, members: [("a.npy", member), ("b.npy", member)], compression: .deflate)
    #expect(try NumPyArchive.read(contentsOf: url, maximumBytes: 2 * member.count).count == 2)
    #expect(throws: NumPyArchiveError.tooLarge(path: url.path, member: "b.npy", limit: 2 * member.count - 1)) {
      try NumPyArchive.read(contentsOf: url, maximumBytes: 2 * member.count - 1)
    }
  }

  @Test("non-.npy members, truncated archives, non-zip files and bad .npy data are errors")
  func invalidArchives() throws {
    let directory = try Self.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }

    let mixed = directory.appendingPathComponent("mixed.npz")
    try Self.writeZip(
      mixed, members: [("x.npy", Self.images.encoded()), ("notes.txt", Data("hi".utf8))], compression: .deflate)
    #expect(throws: NumPyArchiveError.unexpectedMember(path: mixed.path, member: "notes.txt")) {
      try NumPyArchive.read(contentsOf: mixed, maximumBytes: 1 << 20)
    }

    // Every cut of a valid archive fails cleanly: no end record, or a damaged member.
    let whole = try Data(contentsOf: ImageFixtures.url("numpy_savez.npz"))
    let cut = directory.appendingPathComponent("cut.npz")
    for length in stride(from: 0, to: whole.count, by: 9) {
      try whole.prefix(length).write(to: cut)
      #expect(throws: (any Error).self, "cut at \(length)") {
        try NumPyArchive.read(contentsOf: cut, maximumBytes: 1 << 20)
      }
    }
    try whole.prefix(whole.count / 2).write(to: cut)
    #expect(throws: NumPyArchiveError.self) { try NumPyArchive.read(contentsOf: cut, maximumBytes: 1 << 20) }

    // A damaged second central-directory record must not pass as a one-member archive.
    let two = directory.appendingPathComponent("two.npz")
    try Self.writeZip(
      two, members: [("a.npy", Self.images.encoded()), ("b.npy", Self.labels.encoded())], compression: .none)
    var bytes = [UInt8](try Data(contentsOf: two))
    let centralHeaders = (0..<(bytes.count - 4)).filter { bytes[$0..<($0 + 4)] == [0x50, 0x4B, 0x01, 0x02] }
    try #require(centralHeaders.count == 2)
    bytes[centralHeaders[1] + 3] = 0x7F
    try Data(bytes).write(to: two)
    #expect(
      throws: NumPyArchiveError.notZip(path: two.path, reason: "the central directory lists 2 members, 1 are readable")
    ) { try NumPyArchive.read(contentsOf: two, maximumBytes: 1 << 20) }

    let text = directory.appendingPathComponent("text.npz")
    try Data("not a zip".utf8).write(to: text)
    #expect(throws: NumPyArchiveError.self) { try NumPyArchive.read(contentsOf: text, maximumBytes: 1 << 20) }
    #expect(throws: NumPyArchiveError.self) {
      try NumPyArchive.read(contentsOf: directory.appendingPathComponent("missing.npz"), maximumBytes: 1 << 20)
    }

    let badArray = directory.appendingPathComponent("bad.npz")
    try Self.writeZip(badArray, members: [("x.npy", Data("not numpy".utf8))], compression: .none)
    #expect(throws: NumPyError.badMagic(path: badArray.path + ":x.npy")) {
      try NumPyArchive.read(contentsOf: badArray, maximumBytes: 1 << 20)
    }
  }
}
