import ArgumentParser
import Foundation
import QuadraBench
import QuadraCore

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Measure kernel and model speed and memory.",
    subcommands: [
      KernelsCommand.self, ModelBenchCommand.self, MixerCommand.self, OpsBenchCommand.self, AllReduceBenchCommand.self,
      InferenceBenchCommand.self, DataBenchCommand.self,
    ])
}

struct KernelsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "kernels",
    abstract: "FMA peak, GEMM and depthwise 7×7 convolution throughput as a fraction of the peak.")

  @OptionGroup var threadOptions: ThreadOptions
  @Option(
    help: ArgumentHelp(
      "More products to time, comma-separated MxNxK with optional _at / _bt (A or B stored transposed), e.g. "
        + "3136x1024x256_bt,256x1024x3136_at; each operand at most 2^28 floats.",
      valueName: "shapes"))
  var gemm: String?
  @Flag(help: "Print one JSON object instead of a table.") var json = false

  func validate() throws {
    _ = try extraProducts()
  }

  func extraProducts() throws -> [GEMMShape] {
    guard let gemm else { return [] }
    do {
      return try gemm.split(separator: ",", omittingEmptySubsequences: false).map { try GEMMShape(parsing: String($0)) }
    } catch let error as GEMMShapeError {
      throw ValidationError("--gemm: \(error)")
    }
  }

  func run() throws {
    let report = try KernelBenchmark.run(threads: threadOptions.threads, extraProducts: extraProducts()) { line in
      if !json { print(line) } else { Terminal.status(line) }
    }
    if json {
      try Terminal.printJSON(report)
    } else {
      print(
        String(
          format: "peak: %.1f GFLOP/s with %d thread(s), %d-lane FMA vectors", report.peakGFLOPS, report.threads,
          report.peakVectorWidth))
    }
  }
}
