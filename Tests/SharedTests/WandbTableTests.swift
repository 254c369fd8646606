import Foundation
@testable import Shared
import Testing
@testable import WandB

/// `wandb.Table` as the SDK logs it. Captured from wandb 0.29.0 (offline, `run.log({"eval/table":
/// wandb.Table(columns=["id","cer","ref"], data=[["u1",0.1,"안녕"],["u2",None,"x"]])}, step=4)`):
/// the file `media/table/eval/table_4_feacffa23d5ce8018b45.table.json` holds
/// `{"columns":["id","cer","ref"],"data":[["u1",0.1,"안녕"],["u2",null,"x"]]}` (75 bytes), and the
/// history value is `{"_type":"table-file","sha256":"feacffa2…c5cd","size":75,"path":…,"ncols":3,"nrows":2,"log_mode":"IMMUTABLE",…}`.
@Suite("W&B tables")
struct WandbTableTests {
    @Test("a table's file is byte-for-byte the SDK's, and its history value names it with the SDK's path, hash, size and shape")
    func tableMatchesTheSDK() throws {
        let t = WandbMedia.table(key: "eval/table", step: 4, columns: ["id", "cer", "ref"],
                                 rows: [[.string("u1"), .number(0.1), .string("안녕")], [.string("u2"), .null, .string("x")]])
        let content = try #require(t.file.content)
        #expect(String(decoding: content, as: UTF8.self) == #"{"columns":["id","cer","ref"],"data":[["u1",0.1,"안녕"],["u2",null,"x"]]}"#)
        #expect(content.count == 75)
        #expect(t.file.runPath == "media/table/eval/table_4_feacffa23d5ce8018b45.table.json")
        guard case .json(let raw) = t.value else { Issue.record("not a JSON value"); return }
        let v = try JSONCoding.decode(JSONValue.self, from: Array(raw.utf8))
        guard case .object(let o) = v else { Issue.record("not an object: \(raw)"); return }
        #expect(o["_type"] == .string("table-file"))
        #expect(o["sha256"] == .string("feacffa23d5ce8018b45d2d8bb443d8ac78055235bec43eddcb98811514ac5cd"))
        #expect(o["size"] == .number(75) && o["ncols"] == .number(3) && o["nrows"] == .number(2))
        #expect(o["path"] == .string(t.file.runPath) && o["log_mode"] == .string("IMMUTABLE"))
    }

    @Test("non-finite numbers become null (a table file is plain JSON) and strings are escaped")
    func cellsArePlainJSON() throws {
        let t = WandbMedia.table(key: "t", step: 0, columns: ["a", "b"],
                                 rows: [[.number(.nan), .string("say \"hi\"\n")], [.number(.infinity), .number(3)]])
        let text = String(decoding: try #require(t.file.content), as: UTF8.self)
        #expect(text == #"{"columns":["a","b"],"data":[[null,"say \"hi\"\n"],[null,3]]}"#)
        #expect(try JSONSerialization.jsonObject(with: Data(text.utf8)) is [String: Any])
    }

    @Test("the offline writer puts a generated table under files/ and names it in a FilesRecord")
    func offlineWriterWritesGeneratedContent() throws {
        let root = FileManager.default.temporaryDirectory.path + "/wandb-table-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let info = WandbRunInfo(runId: "tbl00001", project: "p", displayName: "t", host: "h", startTime: Date())
        let w = try OfflineRunWriter(root: root, run: info)
        let t = WandbMedia.table(key: "eval/table", step: 4, columns: ["id"], rows: [[.string("u1")]])
        try w.addMedia(t.file)
        try w.log(WandbHistoryRow(step: 4, timestamp: 1, runtime: 0, values: [("eval/table", t.value)]))
        try w.finish(exitCode: 0, runtime: 1)
        let placed = try Data(contentsOf: URL(fileURLWithPath: w.filesDirectory + "/" + t.file.runPath))
        #expect(Array(placed) == t.file.content)
    }
}
