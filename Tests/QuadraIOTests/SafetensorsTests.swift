import Foundation
import Testing

@testable import QuadraIO

func makeTemporaryDirectory() throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("quadra-io-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

func thrownError(_ body: () throws -> Void) -> Error? {
  do {
    try body()
    return nil
  } catch {
    return error
  }
}

/// A safetensors file from a literal header and a buffer of `bufferSize` bytes (0, 1, 2, …).
func rawSafetensors(_ header: String, bufferSize: Int) -> Data {
  var data = Data()
  withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
  data.append(Data(header.utf8))
  data.append(contentsOf: (0..<bufferSize).map { UInt8(truncatingIfNeeded: $0) })
  return data
}

@Suite struct SafetensorsTests {
  /// Written by Python `safetensors.numpy.save` (safetensors 0.8.0) with
  /// weight = float32 [[1.5, -2.25, 3], [0.125, 1e-3, -7]], half = float16 [0.5, -1, 65504, 6.1e-05],
  /// double = float64 scalar π, empty = float32 zeros (0, 4), metadata {"format": "np", "epoch": "3"}.
  static let pythonGolden = """
    GAEAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJmb3JtYXQiOiJucCIsImVwb2NoIjoiMyJ9LCJkb3VibGUiOnsiZHR5cGUiOiJGNjQiLCJzaGFwZSI6W10s\
    ImRhdGFfb2Zmc2V0cyI6WzAsOF19LCJlbXB0eSI6eyJkdHlwZSI6IkYzMiIsInNoYXBlIjpbMCw0XSwiZGF0YV9vZmZzZXRzIjpbOCw4XX0sIndlaWdo\
    dCI6eyJkdHlwZSI6IkYzMiIsInNoYXBlIjpbMiwzXSwiZGF0YV9vZmZzZXRzIjpbOCwzMl19LCJoYWxmIjp7ImR0eXBlIjoiRjE2Iiwic2hhcGUiOls0\
    XSwiZGF0YV9vZmZzZXRzIjpbMzIsNDBdfX0gGC1EVPshCUAAAMA/AAAQwAAAQEAAAAA+bxKDOgAA4MAAOAC8/3v/Aw==
    """

  @Test func readsPythonGoldenFile() throws {
    let file = try Safetensors.decode(try #require(Data(base64Encoded: Self.pythonGolden)))
    #expect(file.metadata == ["format": "np", "epoch": "3"])
    #expect(Set(file.tensors.keys) == ["weight", "half", "double", "empty"])
    let weight = try #require(file.tensors["weight"])
    #expect(weight.shape == [2, 3] && weight.scalars == [1.5, -2.25, 3, 0.125, 1e-3, -7])
    let half = try #require(file.tensors["half"])
    // 6.1e-05 is a float16 subnormal: 1023 · 2⁻²⁴.
    #expect(half.shape == [4] && half.scalars == [0.5, -1, 65504, 1023 * 0x1p-24])
    let double = try #require(file.tensors["double"])
    #expect(double.shape == [] && double.scalar == Float(Double.pi))
    #expect(file.tensors["empty"]?.shape == [0, 4])
  }

  @Test func roundTripThroughAFile() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    var generator = RandomGenerator(seed: 1)
    let tensors: [String: Tensor] = [
      "stem.weight": .normal(shape: [3, 5], using: &generator),
      "bias": .normal(shape: [7], using: &generator),
      "scale": Tensor(2.5),
      "nothing": Tensor(zeros: [0, 4]),
      "blocks.0.conv": .normal(shape: [2, 3, 4, 5], using: &generator),
    ]
    let metadata = ["model": "quadranet-tiny", "note": "quote \" backslash \\ newline \n tab \t π ✓", "epoch": "12"]
    let url = directory.appendingPathComponent("model.safetensors")
    try Safetensors.write(tensors, metadata: metadata, to: url)
    let file = try Safetensors.read(contentsOf: url)
    #expect(file.metadata == metadata)
    #expect(Set(file.tensors.keys) == Set(tensors.keys))
    for (name, tensor) in tensors {
      #expect(file.tensors[name]?.shape == tensor.shape, "\(name)")
      #expect(file.tensors[name]?.scalars == tensor.scalars, "\(name)")
    }

    // Layout: the buffer starts 8-byte aligned after space padding; data in sorted-name order.
    let data = try Data(contentsOf: url)
    let headerLength = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
    #expect(headerLength % 8 == 0)
    let header = String(decoding: data[8..<(8 + headerLength)], as: UTF8.self)
    let json = try #require(
      try JSONSerialization.jsonObject(with: Data(header.utf8)) as? [String: Any])
    var expectedOffset = 0
    for name in tensors.keys.sorted() {
      let entry = try #require(json[name] as? [String: Any])
      #expect(entry["dtype"] as? String == "F32")
      let offsets = try #require(entry["data_offsets"] as? [Int])
      #expect(offsets == [expectedOffset, expectedOffset + tensors[name]!.count * 4], "\(name)")
      expectedOffset += tensors[name]!.count * 4
    }
    #expect(data.count == 8 + headerLength + expectedOffset)
    #expect(header.hasSuffix("}") || header.hasSuffix(" "))
    #expect(header.trimmingCharacters(in: .whitespaces).hasSuffix("}"))
  }

  @Test func readsBFloat16() throws {
    // 1.0 = 0x3F80, -2.5 = 0xC020, 0.15625 = 0x3E20.
    var data = rawSafetensors(#"{"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}}"#, bufferSize: 0)
    data.append(contentsOf: [0x80, 0x3F, 0x20, 0xC0, 0x20, 0x3E])
    #expect(try Safetensors.decode(data).tensors["b"]?.scalars == [1, -2.5, 0.15625])
  }

  @Test func halfPrecisionConversion() {
    #expect(Float(halfBits: 0x3C00) == 1)
    #expect(Float(halfBits: 0xC000) == -2)
    #expect(Float(halfBits: 0x7BFF) == 65504)
    #expect(Float(halfBits: 0x0001) == 0x1p-24)
    #expect(Float(halfBits: 0x8000) == 0 && Float(halfBits: 0x8000).sign == .minus)
    #expect(Float(halfBits: 0x7C00) == .infinity && Float(halfBits: 0xFC00) == -.infinity)
    #expect(Float(halfBits: 0x7E00).isNaN)
    #expect(Float(halfBits: 0x3555) == 0x1p-2 + 341 * 0x1p-12)  // 2⁻² · (1 + 341/1024)
  }

  /// Each corruption produces its own error.
  @Test func corruptionsHaveSpecificErrors() throws {
    let f = #"{"dtype":"F32","shape":[2],"data_offsets":"#
    let cases: [(String, Data, SafetensorsError)] = [
      ("short", Data([1, 2, 3]), .fileTooShort(size: 3)),
      ("header beyond file", { var d = rawSafetensors("{}", bufferSize: 0); d[0] = 200; return d }(),
       .headerLengthOutOfBounds(headerLength: 200, fileSize: 10)),
      ("dtype", rawSafetensors(#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, bufferSize: 8),
       .unsupportedDType(tensor: "a", dtype: "I64")),
      ("size", rawSafetensors(#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#, bufferSize: 20),
       .shapeMismatch(tensor: "a", shape: [2, 3], dtype: "F32", expectedBytes: 24, actualBytes: 20)),
      ("bounds", rawSafetensors(#"{"a":"# + f + "[0,8]}}", bufferSize: 4),
       .offsetsOutOfBounds(tensor: "a", begin: 0, end: 8, bufferSize: 4)),
      ("reversed", rawSafetensors(#"{"a":"# + f + "[8,0]}}", bufferSize: 8),
       .invalidOffsets(tensor: "a", offsets: [8, 0])),
      ("three offsets", rawSafetensors(#"{"a":"# + f + "[0,4,8]}}", bufferSize: 8),
       .invalidOffsets(tensor: "a", offsets: [0, 4, 8])),
      ("overlap", rawSafetensors(#"{"a":"# + f + #"[0,8]},"b":"# + f + "[4,12]}}", bufferSize: 12),
       .overlappingTensors("a", "b")),
      ("gap", rawSafetensors(#"{"a":"# + f + #"[0,8]},"b":"# + f + "[12,20]}}", bufferSize: 20),
       .gap(begin: 8, end: 12)),
      ("trailing", rawSafetensors(#"{"a":"# + f + "[0,8]}}", bufferSize: 11), .trailingBytes(begin: 8, end: 11)),
      ("leading gap", rawSafetensors(#"{"a":"# + f + "[4,12]}}", bufferSize: 12), .gap(begin: 0, end: 4)),
    ]
    for (label, data, expected) in cases {
      let error = thrownError { _ = try Safetensors.decode(data) }
      #expect(error as? SafetensorsError == expected, "\(label): \(String(describing: error))")
    }
  }

  @Test func invalidHeadersAreReported() {
    let headers = [
      #"{"a": {"dtype": "F32""#,  // cut JSON
      #"[1, 2]"#,  // not an object
      #"{"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}"#,  // shape not an array
      #"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#,  // fractional dimension
      #"{"a":{"dtype":"F32","shape":[2]}}"#,  // missing offsets
      #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,  // negative dimension
      #"{"__metadata__":{"k":1}}"#,  // non-string metadata
    ]
    for header in headers {
      let error = thrownError { _ = try Safetensors.decode(rawSafetensors(header, bufferSize: 8)) }
      guard case .invalidHeader(let reason) = error as? SafetensorsError else {
        Issue.record("\(header): expected invalidHeader, got \(String(describing: error))")
        continue
      }
      #expect(!reason.isEmpty)
    }
    var badUTF8 = rawSafetensors("{}  ", bufferSize: 0)
    badUTF8[9] = 0xFF
    #expect(throws: SafetensorsError.invalidHeader("not valid UTF-8")) { try Safetensors.decode(badUTF8) }
  }

  @Test func writerRejectsReservedNames() {
    #expect(throws: SafetensorsError.invalidTensorName("__metadata__")) {
      try Safetensors.encode(["__metadata__": Tensor(1)])
    }
    #expect(throws: SafetensorsError.invalidTensorName("")) { try Safetensors.encode(["": Tensor(1)]) }
  }

  @Test func emptyFileSetRoundTrips() throws {
    let data = try Safetensors.encode([:])
    #expect(data.count % 8 == 0)
    let file = try Safetensors.decode(data)
    #expect(file.tensors.isEmpty && file.metadata.isEmpty)
  }
}
