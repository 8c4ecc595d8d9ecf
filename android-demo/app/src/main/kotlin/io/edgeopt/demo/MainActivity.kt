package io.edgeopt.demo

import android.app.Activity
import android.os.Bundle
import android.widget.Button
import android.widget.EditText
import android.widget.Switch
import android.widget.TextView
import io.edgeopt.core.BundleInvalid
import io.edgeopt.core.EdgeoptException
import io.edgeopt.core.ResultCache
import io.edgeopt.core.TextClassifier
import io.edgeopt.core.TextModel
import io.edgeopt.core.loadOrCreateSecret
import io.edgeopt.core.readManifest
import java.io.File
import java.util.Locale
import java.util.concurrent.Executors

/** One text box: type, tap Classify, see the label, its score, the latency and whether the cache answered. */
class MainActivity : Activity() {
    private val worker = Executors.newSingleThreadExecutor()
    private var classifier: TextClassifier? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val input = findViewById<EditText>(R.id.input)
        val useLiteRt = findViewById<Switch>(R.id.use_litert)
        val button = findViewById<Button>(R.id.classify)
        val result = findViewById<TextView>(R.id.result)

        fun load(liteRt: Boolean) {
            button.isEnabled = false
            result.setText(R.string.loading)
            worker.execute {
                val message = try {
                    classifier?.close()
                    classifier = openClassifier(liteRt)
                    "Ready: ${classifier!!.backend}, labels ${classifier!!.labels}"
                } catch (e: EdgeoptException) {
                    classifier = null
                    e.message ?: e.toString()
                }
                runOnUiThread {
                    result.text = message
                    button.isEnabled = classifier != null
                }
            }
        }

        useLiteRt.setOnCheckedChangeListener { _, checked -> load(checked) }
        button.setOnClickListener {
            val text = input.text.toString()
            worker.execute {
                val shown = try {
                    val p = classifier!!.predict(text)
                    String.format(
                        Locale.ROOT,
                        "%s  %.3f\n%.2f ms · %s%s",
                        p.label, p.score, p.latencyMs,
                        if (p.cached) "from the cache" else "computed by ${classifier!!.backend}",
                        if (p.truncated) " · truncated" else "",
                    )
                } catch (e: EdgeoptException) {
                    e.message ?: e.toString()
                }
                runOnUiThread { result.text = shown }
            }
        }
        load(liteRt = false)
    }

    private fun openClassifier(liteRt: Boolean): TextClassifier {
        val bundle = AssetBundle(assets)
        val manifest = readManifest(bundle)
        val threads = 2
        val model: TextModel = if (liteRt) {
            val (name, _) = manifest.artifactFor("tflite") ?: throw BundleInvalid("the bundle has no tflite model")
            LiteRtTextModel(bundle.bytes(name), threads)
        } else {
            val (name, artifact) = manifest.artifactFor("onnx") ?: throw BundleInvalid("the bundle has no onnx model")
            OnnxTextModel(bundle.bytes(name), threads, artifact.outputQuantization)
        }
        // A cache that cannot be opened (newer schema, corrupt file) only costs speed: go on without it.
        val cache = try {
            // The key lives with the app's private files, which the OS does not clear as it may clear cacheDir;
            // without it a copied cache file cannot be searched for a guessed text.
            val secret = loadOrCreateSecret(File(filesDir, "results.sqlite.key"))
            ResultCache.open(File(cacheDir, "results.sqlite"), secret, AndroidSqlDatabase::open)
        } catch (e: EdgeoptException) {
            null
        }
        return TextClassifier.load(bundle, model, cache)
    }

    override fun onDestroy() {
        worker.execute { classifier?.close() }
        worker.shutdown()
        super.onDestroy()
    }
}
