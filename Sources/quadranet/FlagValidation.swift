import ArgumentParser
import Foundation
import QuadraCore
import QuadraIO
import QuadraModels

/// Range checks for numeric flags; every message names the flag, the allowed range and the value given.
enum FlagCheck {
  /// `names` must list 1…(registered count) registered model names.
  static func registeredModels(_ names: [String], _ flag: String) throws {
    guard !names.isEmpty, names.count <= ModelRegistry.names.count else {
      throw ValidationError("\(flag) must name 1...\(ModelRegistry.names.count) registered models, got \(names.count)")
    }
    try knownModels(names)
  }

  /// Each of `names` must be a registered model.
  static func knownModels(_ names: [String]) throws {
    for name in names where !ModelRegistry.names.contains(name) {
      throw ValidationError(
        "unknown model '\(name.prefix(128))'; registered: \(ModelRegistry.names.joined(separator: ", "))")
    }
  }

  /// A model config file (at most 1 MiB), strictly parsed and validated; errors name `flag` and the file.
  static func modelConfig(file path: String, _ flag: String) throws -> ModelConfig {
    do {
      return try ModelConfig.decodeJSON(BoundedFile.read(URL(fileURLWithPath: path), maximumBytes: 1 << 20))
    } catch let error as BoundedFileError {
      throw ValidationError("\(flag): \(error)")
    } catch let error as JSONInputError {
      throw ValidationError("\(flag) \(path.prefix(200)): not a valid model config: \(error)")
    } catch let error as ModelConfigError {
      throw ValidationError("\(flag) \(path.prefix(200)): \(error)")
    }
  }

  /// The directory an output file `path` goes to must exist, checked before any work whose result it would
  /// hold (nil: no file asked for).
  static func outputFile(_ path: String?, _ flag: String) throws {
    guard let path else { return }
    let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw ValidationError("\(flag) \(path.prefix(200)): the directory \(directory.prefix(200)) does not exist")
    }
  }

  static func integer(_ value: Int?, in range: ClosedRange<Int>, _ flag: String) throws {
    guard let value else { return }
    guard range.contains(value) else {
      throw ValidationError("\(flag) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
    }
  }

  /// A finite value in `range`; `rangeText` says the range as users should read it (e.g. "(0, 10]").
  static func real<F: BinaryFloatingPoint>(_ value: F?, in range: ClosedRange<F>, _ rangeText: String, _ flag: String)
    throws
  {
    guard let value else { return }
    guard value.isFinite, range.contains(value) else {
      throw ValidationError("\(flag) must be a finite number in \(rangeText), got \(value)")
    }
  }

  /// A finite value in `range` (half-open).
  static func real<F: BinaryFloatingPoint>(_ value: F?, in range: Range<F>, _ rangeText: String, _ flag: String) throws {
    guard let value else { return }
    guard value.isFinite, range.contains(value) else {
      throw ValidationError("\(flag) must be a finite number in \(rangeText), got \(value)")
    }
  }
}

/// `--threads`, shared by every command that computes.
struct ThreadOptions: ParsableArguments {
  /// The accepted thread counts.
  static let range = 1...1024

  // `.unconditional` takes "-3" as the value, so the message is the range error, not "missing value".
  // Optional so that a command resuming recorded work can tell a flag given now from the default.
  @Option(name: .customLong("threads"), parsing: .unconditional, help: "Threads for the compute kernels, 1...1024 (default: all cores).")
  var requestedThreads: Int?

  /// `--threads`, or all cores (at most 1024).
  var threads: Int { requestedThreads ?? Swift.min(ProcessInfo.processInfo.activeProcessorCount, Self.range.upperBound) }

  func validate() throws {
    try FlagCheck.integer(requestedThreads, in: Self.range, "--threads")
    let cores = ProcessInfo.processInfo.activeProcessorCount
    if threads > cores {
      Terminal.status(
        "warning: --threads \(threads) exceeds the \(cores) core(s) of this machine; the extra threads only add overhead")
    }
  }
}

/// `--memory-limit`, for the commands that build models or load data.
struct MemoryOptions: ParsableArguments {
  @Option(
    parsing: .unconditional,
    help: ArgumentHelp(
      "Memory this run may plan to use, e.g. 8G or 512M (K/M/G/T are powers of 1024; default: 80% of the "
        + "available memory, or $\(MemoryBudget.environmentVariable)).",
      valueName: "size"))
  var memoryLimit: String?

  func validate() throws {
    do {
      try MemoryBudget.checkEnvironment()
      if let memoryLimit { _ = try MemoryBudget.parseLimit(memoryLimit, source: "--memory-limit") }
    } catch let error as MemoryBudgetError {
      throw ValidationError(error.description)
    }
  }

  /// Makes `--memory-limit` the process's limit (validated already).
  func apply() throws {
    if let memoryLimit { MemoryBudget.setLimit(try MemoryBudget.parseLimit(memoryLimit, source: "--memory-limit")) }
  }
}
