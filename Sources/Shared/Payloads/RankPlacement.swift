import Foundation

/// Where one rank of a run sits in its world: what the `{rank}`, `{world_size}`, `{local_rank}`,
/// `{nnodes}`, `{node_rank}`, `{master_addr}` and `{master_port}` placeholders stand for, and the
/// environment torch.distributed's `env://` initialisation and torchrun-style trainers read
/// (``environment``).
///
/// Ranks on one host are consecutive (`local_rank` 0 … k−1 on node `node_rank`); rank 0 is on
/// node 0, whose address and reserved port are the rendezvous (`MASTER_ADDR`, `MASTER_PORT`).
public struct RankPlacement: Sendable, Equatable, Hashable, Codable {
    public var rank: Int
    public var worldSize: Int
    public var localRank: Int
    /// Ranks on this rank's host.
    public var localWorldSize: Int
    public var nodes: Int
    public var nodeRank: Int
    public var masterAddress: String
    public var masterPort: Int

    public init(rank: Int, worldSize: Int, localRank: Int, localWorldSize: Int, nodes: Int, nodeRank: Int, masterAddress: String, masterPort: Int) {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank
        self.localWorldSize = localWorldSize
        self.nodes = nodes
        self.nodeRank = nodeRank
        self.masterAddress = masterAddress
        self.masterPort = masterPort
    }

    /// The one rank of a single-GPU run, its rendezvous on the worker's own address and port.
    public static func single(address: String = "127.0.0.1", port: Int = 29_500) -> RankPlacement {
        RankPlacement(rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, nodes: 1, nodeRank: 0, masterAddress: address, masterPort: port)
    }

    /// The standard variables (as torchrun sets them for each process it starts).
    public var environment: [String: String] {
        ["MASTER_ADDR": masterAddress, "MASTER_PORT": String(masterPort), "RANK": String(rank), "WORLD_SIZE": String(worldSize),
         "LOCAL_RANK": String(localRank), "LOCAL_WORLD_SIZE": String(localWorldSize),
         "GROUP_RANK": String(nodeRank), "NODE_RANK": String(nodeRank)]
    }

    enum CodingKeys: String, CodingKey {
        case rank, worldSize = "world_size", localRank = "local_rank", localWorldSize = "local_world_size", nodes = "nnodes",
             nodeRank = "node_rank", masterAddress = "master_addr", masterPort = "master_port"
    }
}
