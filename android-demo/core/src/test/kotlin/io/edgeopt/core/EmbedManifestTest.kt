package io.edgeopt.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.io.File
import java.nio.file.Files

/** Embed manifests: the real one from the goldens, its fingerprint rule, and malformed ones made here. */
class EmbedManifestTest {
    private lateinit var dir: File
    private val bundle get() = DirectoryBundle(dir)
    private val where get() = "${dir.path}/manifest.json"

    /** An embed bundle of real files (the golden embed tokenizer, stand-in model bytes) with a correct manifest. */
    @BeforeEach
    fun makeBundle() {
        dir = Files.createTempDirectory("embed-bundle").toFile()
        EmbedGolden.copy("tokenizer.json", dir)
        File(dir, "model.onnx").writeBytes(ByteArray(300) { (it * 7).toByte() })
        writeManifest { }
    }

    private fun writeManifest(edit: (JSONObject) -> Unit) {
        val raw = JSONObject(EmbedGolden.text("manifest.json"))
        val files = JSONObject()
        for (name in listOf("model.onnx", "tokenizer.json")) {
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
    fun `the real embed manifest parses with its embedding spec`() {
        val m = EmbedGolden.manifest
        val b = EmbedGolden.bundle
        assertEquals(TASK_EMBED, m.task)
        assertEquals(emptyList<String>(), m.labels)
        assertEquals(EmbeddingSpec(b.getInt("dim"), b.getString("pooling"), b.getBoolean("normalized")), m.embedding)
        assertEquals(listOf("embedding"), m.outputs.map { it.name })
        assertEquals(listOf("batch", m.embedding!!.dim), m.outputs.single().shape)
        assertEquals(null, Golden.manifest.embedding, "a classifier has no embedding spec")
    }

    @Test
    fun `the embed fingerprint recomputes byte for byte`() {
        val m = EmbedGolden.manifest
        assertEquals(EmbedGolden.fingerprint, m.fingerprint, REGENERATE_EMBED)
        assertEquals(m.fingerprint, computeFingerprint(m), "Kotlin's embed fingerprint differs from the Python runtime's")
        // Without the embedding element the document is a classifier's: another hash.
        assertNotEquals(m.fingerprint, computeFingerprint(m.copy(embedding = null)))
    }

    @Test
    fun `fingerprints of other embedding specs equal the runtime's`() {
        val cases = EmbedGolden.json.getJSONArray("fingerprint_cases").objects()
        assertTrue(cases.size >= 4)
        for (case in cases) {
            val spec = EmbeddingSpec(case.getInt("dim"), case.getString("pooling"), case.getBoolean("normalized"))
            val m = EmbedGolden.manifest
            val changed = m.copy(embedding = spec, outputs = m.outputs.map { it.copy(shape = listOf("batch", spec.dim)) })
            assertEquals(case.getString("fingerprint"), computeFingerprint(changed), "$spec")
        }
    }

    @Test
    fun `an embed bundle verifies, and edits of its spec fail verification`() {
        val m = verifyBundle(bundle)
        assertEquals(EmbedGolden.manifest.embedding, m.embedding)
        val edits = mapOf<String, (JSONObject) -> Unit>(
            "dim" to { it.put("dim", 128) },
            "pooling" to { it.put("pooling", "cls") },
            "normalized" to { it.put("normalized", false) },
        )
        for ((what, change) in edits) {
            writeManifest(change)
            assertTrue(fails().contains("does not match the manifest"), what)
        }
    }

    @Test
    fun `malformed embed fields are refused with one line`() {
        val fix = "rebuild or re-copy the bundle"
        val cases = listOf<Pair<(JSONObject) -> Any?, String>>(
            { m: JSONObject -> m.put("labels", JSONArray().put("a")) } to "key 'labels' must be an empty list (an embed bundle has no labels), got [\"a\"]; $fix",
            { m: JSONObject -> m.put("labels", "none") } to "key 'labels' must be an empty list (an embed bundle has no labels), got none; $fix",
            { m: JSONObject -> m.remove("dim") } to "required key 'dim' is missing; $fix",
            { m: JSONObject -> m.put("dim", 0) } to "key 'dim' must be a positive integer, got 0; $fix",
            { m: JSONObject -> m.put("dim", "384") } to "key 'dim' must be a positive integer, got 384; $fix",
            { m: JSONObject -> m.put("dim", true) } to "key 'dim' must be a positive integer, got true; $fix",
            { m: JSONObject -> m.put("dim", 1.5) } to "key 'dim' must be a positive integer, got 1.5; $fix",
            { m: JSONObject -> m.remove("pooling") } to "required key 'pooling' is missing; $fix",
            { m: JSONObject -> m.put("pooling", "sum") } to "key 'pooling' must be one of mean, cls, max, got sum; $fix",
            { m: JSONObject -> m.put("pooling", 3) } to "key 'pooling' must be one of mean, cls, max, got 3; $fix",
            { m: JSONObject -> m.remove("normalized") } to "required key 'normalized' is missing; $fix",
            { m: JSONObject -> m.put("normalized", 1) } to "key 'normalized' must be true or false, got 1; $fix",
            { m: JSONObject -> m.put("normalized", "true") } to "key 'normalized' must be true or false, got true; $fix",
        )
        for ((edit, message) in cases) {
            writeManifest { edit(it) }
            assertEquals("$where: $message", fails())
            assertEquals(1, fails().lines().size)
        }
    }

    @Test
    fun `each kind of bundle is refused by the other's loader`() {
        val e = assertThrows<BundleInvalid> { TextClassifier.load(bundle, ReplayEmbedModel("onnx")) }
        assertEquals("bundle ${dir.path} has task 'embed', not 'text-classification'; embed with it: TextEmbedder.load", e.message)
        val classifierDir = Files.createTempDirectory("clf-bundle").toFile()
        Golden.copy("tokenizer.json", classifierDir)
        File(classifierDir, "model.onnx").writeBytes(ByteArray(10))
        val raw = JSONObject(Golden.text("manifest.json"))
        val (sha, size) = sha256AndSize(File(classifierDir, "tokenizer.json").inputStream())
        val (msha, msize) = sha256AndSize(File(classifierDir, "model.onnx").inputStream())
        raw.put("files", JSONObject().put("tokenizer.json", JSONObject().put("sha256", sha).put("bytes", size)).put("model.onnx", JSONObject().put("sha256", msha).put("bytes", msize)))
        raw.put("artifacts", JSONObject().put("model.onnx", JSONObject().put("format", "onnx").put("precision", "int8")))
        File(classifierDir, MANIFEST_NAME).writeText(raw.toString())
        raw.put("fingerprint", computeFingerprint(readManifest(DirectoryBundle(classifierDir))))
        File(classifierDir, MANIFEST_NAME).writeText(raw.toString())
        val c = assertThrows<BundleInvalid> { TextEmbedder.load(DirectoryBundle(classifierDir), ReplayEmbedModel("onnx")) }
        assertEquals("bundle ${classifierDir.path} has task 'text-classification', not 'embed'; classify with it: TextClassifier.load", c.message)
        assertThrows<BundleInvalid> { TextEmbedder(Golden.manifest, Golden.tokenizer, ReplayEmbedModel("onnx")) }
    }

    @Test
    fun `an embed bundle loads into a TextEmbedder with its tokenizer`() {
        TextEmbedder.load(bundle, ReplayEmbedModel("onnx")).use { e ->
            assertEquals(EmbedGolden.dim, e.dim)
            assertEquals(verifyBundle(bundle).fingerprint, e.fingerprint)
            val case = EmbedGolden.validCases.first()
            assertEquals(case.getJSONArray("input_ids").longs().toList(), e.tokenizer.encode(case.getString("text")).inputIds.toList())
        }
        val tflite = assertThrows<BundleInvalid> { TextEmbedder.load(bundle, ReplayEmbedModel("tflite")) }
        assertEquals("bundle ${dir.path} has no tflite model (it has: onnx); use another backend", tflite.message)
    }
}
