import ArgumentParser
import Foundation
import QuadraBench
import QuadraCore

/// `quadranet bench mixer`: the fused quadratic depthwise mixer against the unfused composition.
struct MixerCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mixer",
    abstract: "Fused vs unfused quadratic depthwise 7×7 mixer: forward+backward time and tape bytes at quadranet-t's stage shapes (batch 16, 224²).")

  @OptionGroup var threadOptions: ThreadOptions
  @Flag(help: "Print one JSON object instead of a table.") var json = false

  func run() throws {
    let report = try MixerBenchmark.run(threads: threadOptions.threads) { line in
      if !json { print(line) } else { Terminal.status(line) }
    }
    if json {
      try Terminal.printJSON(report)
    } else {
      print(
        String(
          format: "total: fused %.1f ms, %.1f MiB saved; unfused %.1f ms, %.1f MiB saved; speedup %.2f×, memory %.2f×",
          report.fused.seconds * 1000, Double(report.fused.savedBytes) / 1_048_576,
          report.unfused.seconds * 1000, Double(report.unfused.savedBytes) / 1_048_576,
          report.unfused.seconds / report.fused.seconds,
          Double(report.fused.savedBytes) / Double(max(report.unfused.savedBytes, 1))))
    }
  }
}
