import Testing

@testable import QuadraBench

/// `bench kernels --gemm`: the shape syntax, and every malformed or oversized shape refused with its reason.
@Suite struct GEMMShapeTests {
  @Test func parsesSizesAndTranspositions() throws {
    #expect(try GEMMShape(parsing: "3136x1024x256") == GEMMShape(m: 3136, n: 1024, k: 256))
    #expect(try GEMMShape(parsing: "3136x1024x256_bt") == GEMMShape(m: 3136, n: 1024, k: 256, transposeB: true))
    #expect(try GEMMShape(parsing: "40X80X12544_AT") == GEMMShape(m: 40, n: 80, k: 12544, transposeA: true))
    let both = try GEMMShape(parsing: "7x9x11_bt_at")
    #expect(both == GEMMShape(m: 7, n: 9, k: 11, transposeA: true, transposeB: true))
    #expect(both.description == "7x9x11_at_bt")
    #expect(try GEMMShape(parsing: both.description) == both)
  }

  @Test(arguments: [
    ("", "three sizes"), ("12x34", "three sizes"), ("1x2x3x4", "three sizes"), ("0x5x5", "'0'"),
    ("5x-1x5", "'-1'"), ("5x5x1.5", "'1.5'"), ("5xx5", "''"), ("2000000x5x5", "'2000000'"),
    ("5x5x5_ct", "'_ct'"), ("5x5x5_at_at", "'_at'"), ("5x5x5_", "'_'"),
    ("65536x65536x1", "C would hold 4294967296 floats"), ("1x65536x65536", "B would hold"),
    ("99999999999999999999x1x1", "not an integer"),
  ])
  func refusesWithTheReason(text: String, reason: String) {
    do {
      let shape = try GEMMShape(parsing: text)
      Issue.record("'\(text)' parsed as \(shape)")
    } catch {
      #expect("\(error)".contains(reason), "\(error)")
      #expect("\(error)".contains("'\(text)'"), "\(error)")
    }
  }
}
