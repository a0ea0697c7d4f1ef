import ArgumentParser
import Foundation
import QuadraModels

struct ModelsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "models", abstract: "List the registered models with their parameters and MACs.")

  @Option(
    parsing: .unconditional,
    help: "Input resolution (square) at which MACs are counted, 1...8192; default: 224, or 28 for the 28×28 models.")
  var resolution: Int?
  @Option(parsing: .unconditional, help: "Number of classes of the classifier head, 1...100000 (default: the model's own).")
  var classes: Int?
  @Flag(help: "Print a JSON array instead of a table.") var json = false

  struct Entry: Codable {
    var name: String
    var params: Int
    var macs: Int
  }

  func validate() throws {
    try FlagCheck.integer(resolution, in: ModelConfig.Limits.resolution, "--resolution")
    try FlagCheck.integer(classes, in: ModelConfig.Limits.classCount, "--classes")
  }

  func run() throws {
    var entries: [Entry] = []
    for var config in ModelRegistry.all {
      if let classes { config.classCount = classes }
      let size = resolution ?? (config.inputChannels == 1 ? 28 : 224)
      let minimum = config.minimumResolution
      guard size >= minimum else {
        if !json { print("\(config.name): resolution \(size) is below its minimum \(minimum); skipped") }
        continue
      }
      entries.append(Entry(name: config.name, params: config.parameterCount, macs: config.macs(resolution: size)))
    }
    if json {
      try Terminal.printJSON(entries)
      return
    }
    print("model                params      MACs")
    for entry in entries {
      print(
        entry.name.padding(toLength: 18, withPad: " ", startingAt: 0)
          + String(format: "%8.2fM  %8.3fG", Double(entry.params) / 1e6, Double(entry.macs) / 1e9))
    }
  }
}
