import ArgumentParser
import Foundation
import QuadraBench
import QuadraCore

/// `quadranet bench ops`: every op case of the backend test table, timed on one backend.
struct OpsBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ops",
    abstract: "Time every tensor op (forward and backward) on one backend, as GFLOP/s or GB/s per op case.")

  @Option(help: "Comma-separated op families to run (default: all). One of: \(BackendOpCatalog.opNames.joined(separator: ",")).")
  var ops: String = ""

  @Option(help: "Only the cases whose variant (the shapes column) contains this text, e.g. \"x[64,14,14,40]\" (default: all).")
  var variant: String = ""

  @Option(help: "Backend to time: \(Backends.all.map(\.name).joined(separator: "|")).")
  var backend: String = "cpu"

  @Option(help: "Shapes: large (training sizes) or small (the test shapes; use with --backend reference).")
  var size: String = "large"

  @Option(help: "Timed calls per pass, 1...1000 (the best is reported).")
  var repetitions: Int = 3

  @OptionGroup var threadOptions: ThreadOptions
  @Flag(help: "Print one JSON object instead of a table.") var json = false

  /// The op families named by `--ops` (empty: all).
  var selectedOps: [String] {
    ops.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  }

  func validate() throws {
    guard Backends.named(backend) != nil else {
      throw ValidationError("--backend: unknown backend \"\(backend)\"; choose one of \(Backends.all.map(\.name))")
    }
    let known = BackendOpCatalog.opNames
    if let unknown = selectedOps.first(where: { !known.contains($0) }) {
      throw ValidationError("--ops: unknown op \"\(unknown)\"; choose from \(known.joined(separator: ","))")
    }
    guard BackendOpCatalog.Scale(rawValue: size) != nil else {
      throw ValidationError("--size must be one of \(BackendOpCatalog.Scale.allCases.map(\.rawValue)), got \"\(size)\"")
    }
    guard (1...1000).contains(repetitions) else {
      throw ValidationError("--repetitions must be in 1...1000, got \(repetitions)")
    }
  }

  func run() throws {
    let report: OpBenchReport
    do {
      report = try OpBenchmark.run(
        backendName: backend, ops: selectedOps, variant: variant, threads: threadOptions.threads,
        scale: BackendOpCatalog.Scale(rawValue: size)!, repetitions: repetitions
      ) { line in
        if !json { print(line) } else { Terminal.status(line) }
      }
    } catch let error as OpBenchmark.ArgumentError {
      throw ValidationError(error.description)
    }
    if json { try Terminal.printJSON(report) }
  }
}
