import QuadraBench
import QuadraCore
import Testing

/// `bench ops --variant TEXT` times only the cases whose variant contains the text (profiling one shape
/// needs the others out of the way), and a text no case has is an error naming the flag.
@Suite struct OpBenchmarkTests {
  @Test func variantSelectsTheMatchingCasesOnly() throws {
    let all = try OpBenchmark.run(backendName: "cpu", ops: ["layerNorm"], threads: 1, scale: .small, repetitions: 1)
    let variants = Set(all.results.map(\.variant))
    #expect(variants.count >= 2, "the small layerNorm cases should have several shapes to choose from")
    let chosen = try #require(variants.sorted().first)
    let report = try OpBenchmark.run(
      backendName: "cpu", ops: ["layerNorm"], variant: chosen, threads: 1, scale: .small, repetitions: 1)
    #expect(!report.results.isEmpty)
    #expect(report.results.allSatisfy { $0.variant.contains(chosen) })
    #expect(report.results.count < all.results.count)
  }

  @Test func unknownVariantIsAnError() {
    #expect {
      try OpBenchmark.run(backendName: "cpu", ops: ["layerNorm"], variant: "no such shape", threads: 1, scale: .small)
    } throws: { error in
      String(describing: error).contains("--variant")
    }
  }
}
