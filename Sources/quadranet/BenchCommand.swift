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
  @Flag(help: "Print one JSON object instead of a table.") var json = false

  func run() throws {
    let report = try KernelBenchmark.run(threads: threadOptions.threads) { line in
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
