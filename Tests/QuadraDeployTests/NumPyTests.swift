import Foundation
import QuadraData
import QuadraDeploy
import Testing

@Suite("NumPy .npy files")
struct NumPyTests {
  /// A .npy file with the given header text (version 1.0) and payload.
  func file(header: String, payload: [UInt8], version: UInt8 = 1) -> Data {
    var text = header
    let prefix = version == 1 ? 10 : 12
    text += String(repeating: " ", count: (64 - (prefix + text.utf8.count + 1) % 64) % 64) + "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [version, 0])
    let length = text.utf8.count
    if version == 1 {
      data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
    } else {
      data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), 0, 0])
    }
    data.append(contentsOf: Array(text.utf8))
    data.append(contentsOf: payload)
    return data
  }

  func floatBytes(_ values: [Float], bigEndian: Bool = false) -> [UInt8] {
    values.flatMap { value -> [UInt8] in
      let bits = bigEndian ? value.bitPattern.bigEndian : value.bitPattern.littleEndian
      return withUnsafeBytes(of: bits) { Array($0) }
    }
  }

  @Test("uint8 and float32 arrays round-trip through encoded()")
  func roundTrip() throws {
    let bytes = NumPyArray(shape: [2, 3], elements: .uint8([0, 1, 2, 253, 254, 255]))
    #expect(try NumPyArray.parse(bytes.encoded(), path: "a.npy") == bytes)
    let floats = NumPyArray(shape: [3], elements: .float32([-1.5, 0, .greatestFiniteMagnitude]))
    let encoded = floats.encoded()
    #expect(try NumPyArray.parse(encoded, path: "b.npy") == floats)
    // The data starts at a multiple of 64 bytes, as NumPy writes it.
    #expect((encoded.count - 12) % 64 == 0)
    let scalar = NumPyArray(shape: [], elements: .float32([7]))
    #expect(try NumPyArray.parse(scalar.encoded(), path: "c.npy") == scalar)
  }

  @Test("headers NumPy writes: versions 2.0 and 3.0, big-endian floats, double quotes, no trailing comma")
  func headerVariants() throws {
    let v2 = file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", payload: floatBytes([1, 2]), version: 2)
    #expect(try NumPyArray.parse(v2, path: "v2.npy").floats == [1, 2])
    let v3 = file(header: "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)}", payload: [9], version: 3)
    #expect(try NumPyArray.parse(v3, path: "v3.npy").elements == .uint8([9]))
    let big = file(
      header: "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \">f4\"}", payload: floatBytes([3, -4], bigEndian: true))
    #expect(try NumPyArray.parse(big, path: "big.npy").floats == [3, -4])
  }

  @Test("corrupt files give errors naming the file and the problem", arguments: [
    ("bad magic", Data("PK\u{3}\u{4}notnumpy".utf8), "not a NumPy .npy file"),
    ("truncated prefix", Data([0x93, 0x4E, 0x55]), "truncated"),
    ("unsupported version", Data([0x93] + Array("NUMPY".utf8) + [4, 0, 0, 0]), "version 4.0"),
  ])
  func corruptPrefix(label: String, data: Data, expected: String) {
    let message = errorMessage { _ = try NumPyArray.parse(data, path: "/data/x.npy") }
    #expect(message?.contains("/data/x.npy") == true, "\(label)")
    #expect(message?.contains(expected) == true, "\(label): \(message ?? "no error")")
  }

  @Test("header and payload problems are reported, never trapped")
  func badHeaders() {
    let cases: [(String, Data, String)] = [
      ("fortran", file(header: "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2), }", payload: [1, 2, 3, 4]), "fortran_order"),
      ("float64", file(header: "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", payload: Array(repeating: 0, count: 8)), "'<f8' is not supported"),
      ("object", file(header: "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", payload: [0]), "not supported"),
      ("missing key", file(header: "{'descr': '|u1', 'shape': (1,), }", payload: [0]), "expected the keys"),
      ("extra key", file(header: "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'x': 'y'}", payload: [0]), "expected the keys"),
      ("duplicate key", file(header: "{'descr': '|u1', 'descr': '|u1', 'shape': (1,)}", payload: [0]), "duplicate"),
      ("negative dimension", file(header: "{'descr': '|u1', 'fortran_order': False, 'shape': (-1,), }", payload: [0]), "non-negative"),
      ("unterminated", file(header: "{'descr': '|u1', 'fortran_order': False, 'shape': (1,", payload: [0]), "malformed"),
      ("trailing text", file(header: "{'descr': '|u1', 'fortran_order': False, 'shape': (1,)} extra", payload: [0]), "after the dict"),
      ("overflowing shape", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", payload: []), "more elements"),
      ("huge dimension", file(header: "{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999999,), }", payload: []), "too large"),
      ("truncated data", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", payload: floatBytes([1, 2])), "truncated"),
      ("trailing data", file(header: "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", payload: [1, 2, 3]), "unexpected bytes"),
    ]
    for (label, data, expected) in cases {
      let message = errorMessage { _ = try NumPyArray.parse(data, path: "in.npy") }
      #expect(message?.contains("in.npy") == true, "\(label): \(message ?? "no error")")
      #expect(message?.contains(expected) == true, "\(label): \(message ?? "no error")")
    }
  }

  @Test("a header length beyond the limit is refused before anything is allocated")
  func headerTooLarge() {
    var data = Data([0x93] + Array("NUMPY".utf8) + [2, 0])
    data.append(contentsOf: [0xFF, 0xFF, 0xFF, 0x7F])
    let message = errorMessage { _ = try NumPyArray.parse(data, path: "big.npy") }
    #expect(message?.contains("exceeds the limit of 65536 bytes") == true)
  }

  @Test("a missing file names the path")
  func missingFile() {
    let message = errorMessage { _ = try NumPyArray.read(contentsOf: URL(fileURLWithPath: "/nonexistent/images.npy")) }
    #expect(message == "/nonexistent/images.npy: cannot read the .npy file: no such file")
  }
}
