package io.edgeopt.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.io.File
import java.nio.file.Files

/** Reading and verifying bundles: the real golden manifest, and a small bundle made here. */
class ManifestTest {
    private lateinit var dir: File
    private val bundle get() = DirectoryBundle(dir)

    /** A bundle of real files (the golden tokenizer, stand-in model bytes, a report) with a correct manifest. */
    @BeforeEach
    fun makeBundle() {
        dir = Files.createTempDirectory("bundle").toFile()
        Golden.copy("tokenizer.json", dir)
        File(dir, "model.onnx").writeBytes(ByteArray(300) { it.toByte() })
        File(dir, "report.md").writeText("# report\n")
        writeManifest { }
    }

    private fun writeManifest(edit: (JSONObject) -> Unit) {
        val raw = JSONObject(Golden.text("manifest.json"))
        val files = JSONObject()
        for (name in listOf("model.onnx", "tokenizer.json", "report.md")) {
            val (sha, size) = sha256AndSize(File(dir, name).inputStream())
            files.put(name, JSONObject().put("sha256", sha).put("bytes", size))
        }
        raw.put("files", files)
        raw.put("artifacts", JSONObject().put("model.onnx", JSONObject().put("format", "onnx").put("precision", "int8")))
        raw.put("fingerprint", "0".repeat(64))
        File(dir, MANIFEST_NAME).writeText(raw.toString())
        raw.put("fingerprint", computeFingerprint(readManifest(bundle)))
        edit(raw)
        File(dir, MANIFEST_NAME).writeText(raw.toString())
    }

    private fun fails(): String = assertThrows<BundleInvalid> { verifyBundle(bundle) }.message!!

    @Test
    fun `the real manifest parses with its artifacts in order`() {
        val m = Golden.manifest
        assertEquals(TASK_TEXT_CLASSIFICATION, m.task)
        assertEquals(m.artifacts.keys.first(), JSONObject(Golden.text("manifest.json")).getJSONObject("artifacts").keys().next())
        for ((name, art) in m.artifacts) {
            if (art.outputDtype != "float32") assertTrue(art.outputQuantization != null, "$name: int output without quantization")
        }
        assertEquals(listOf("input_ids", "attention_mask"), m.inputs.map { it.name })
        assertEquals(listOf("batch", Golden.maxSeqLen), m.inputs.first().shape)
    }

    @Test
    fun `the real manifest without its models names the first missing file`() {
        Golden.copy("manifest.json", dir)
        val first = Golden.manifest.files.keys.first { !File(dir, it).isFile }
        assertEquals("${dir.path}/$first is listed in manifest.json but missing; rebuild or re-copy the bundle", fails())
    }

    @Test
    fun `a correct bundle verifies`() {
        val m = verifyBundle(bundle)
        assertEquals(Golden.labels, m.labels)
        assertEquals("model.onnx", m.artifactFor("onnx")?.first)
        assertEquals(null, m.artifactFor("tflite"))
    }

    @Test
    fun `a changed byte is caught by its hash`() {
        val f = File(dir, "model.onnx")
        f.writeBytes(f.readBytes().also { it[7] = 99 })
        assertTrue(fails().startsWith("${dir.path}/model.onnx has sha256 "), fails())
    }

    @Test
    fun `a changed size is caught`() {
        File(dir, "report.md").appendText("x")
        assertEquals("${dir.path}/report.md has 10 bytes, the manifest expects 9; rebuild or re-copy the bundle", fails())
    }

    @Test
    fun `an unknown schema version asks for an update`() {
        writeManifest { it.put("schema_version", 1) }
        assertEquals(
            "${dir.path}/manifest.json: schema_version 1 is not supported; this app reads schema_version 2; " +
                "update the app or rebuild the bundle with a matching edgeopt",
            fails(),
        )
        writeManifest { it.remove("schema_version") }
        assertTrue(fails().contains("schema_version missing is not supported"))
    }

    @Test
    fun `unsafe file names are refused`() {
        writeManifest { it.getJSONObject("files").put("../escape.onnx", JSONObject().put("sha256", "0".repeat(64)).put("bytes", 1)) }
        assertEquals(
            "${dir.path}/manifest.json: file name '../escape.onnx' contains '..' or a backslash and could point outside the bundle; rebuild or re-copy the bundle",
            fails(),
        )
        writeManifest { it.getJSONObject("files").put("/etc/passwd", JSONObject().put("sha256", "0".repeat(64)).put("bytes", 1)) }
        assertTrue(fails().contains("is absolute"))
    }

    @Test
    fun `a symbolic link out of the bundle is refused`() {
        val outside = File(Files.createTempDirectory("outside").toFile(), "secret.json").apply { writeText("{}") }
        Files.createSymbolicLink(File(dir, "link.json").toPath(), outside.toPath())
        writeManifest { it.getJSONObject("files").put("link.json", JSONObject().put("sha256", "0".repeat(64)).put("bytes", 2)) }
        assertTrue(fails().contains("file 'link.json' resolves to"), fails())
    }

    @Test
    fun `a wrong fingerprint, an unlisted tokenizer and bad types are clear`() {
        writeManifest { it.put("fingerprint", "b".repeat(64)) }
        assertTrue(fails().contains("fingerprint ${"b".repeat(64)} does not match the manifest"))
        writeManifest { it.getJSONObject("files").remove("tokenizer.json") }
        assertTrue(fails().endsWith("'tokenizer.json' is used by the bundle but not listed under 'files'; rebuild or re-copy the bundle"))
        writeManifest { it.put("labels", org.json.JSONArray().put("only")) }
        assertEquals("${dir.path}/manifest.json: key 'labels' must be a list of at least two distinct strings, got [\"only\"]; rebuild or re-copy the bundle", fails())
        writeManifest { it.remove("max_seq_len") }
        assertEquals("${dir.path}/manifest.json: required key 'max_seq_len' is missing; rebuild or re-copy the bundle", fails())
    }

    @Test
    fun `fingerprints of changed manifests equal the runtime's`() {
        // Labels that need JSON escaping and quantization scales of every float form: the canonical document must
        // be Python's byte for byte.
        for (case in Golden.json.getJSONArray("fingerprint_cases").objects()) {
            val labels = case.getJSONArray("labels").strings()
            val scale = case.opt("scale")?.takeIf { it != JSONObject.NULL }?.let { (it as Number).toDouble() }
            val m = Golden.manifest
            val changed = m.copy(
                labels = labels,
                outputs = m.outputs.map { it.copy(shape = listOf("batch", labels.size)) },
                artifacts = m.artifacts.mapValues { (_, a) ->
                    if (scale == null || a.outputQuantization == null) a else a.copy(outputQuantization = a.outputQuantization.copy(scale = scale))
                },
            )
            assertEquals(case.getString("fingerprint"), computeFingerprint(changed), "$labels, scale $scale")
        }
    }

    @Test
    fun `edits that change an answer fail verification`() {
        // Each passed verification while the fingerprint covered the file hashes only; swapped labels invert every answer.
        val edits = mapOf<String, (JSONObject) -> Unit>(
            "labels swapped" to { m -> m.put("labels", org.json.JSONArray(m.getJSONArray("labels").strings().reversed())) },
            "max_seq_len" to { m -> m.put("max_seq_len", m.getInt("max_seq_len") / 2) },
            "artifact precision" to { m -> m.getJSONObject("artifacts").getJSONObject("model.onnx").put("precision", "float32") },
            "input dtype" to { m -> m.getJSONArray("inputs").getJSONObject(0).put("dtype", org.json.JSONArray().put("int32")) },
        )
        for ((what, change) in edits) {
            writeManifest(change)
            assertTrue(fails().contains("does not match the manifest"), what)
        }
    }

    @Test
    fun `missing and broken manifests`() {
        File(dir, MANIFEST_NAME).writeText("{oops")
        assertTrue(fails().startsWith("${dir.path}/manifest.json is not a valid JSON object ("))
        File(dir, MANIFEST_NAME).delete()
        assertEquals("${dir.path}/manifest.json is missing; ${dir.path} is not an edgeopt bundle, or it was copied incompletely", fails())
    }
}
